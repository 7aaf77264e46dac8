// hct-cache: the command-line face of hct::Cache (parsing and printing only).
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hct/cache.h"
#include "hct/units.h"
#include "tools/common/cli.h"
#include "tools/common/progress.h"

namespace po = boost::program_options;
using nlohmann::json;

namespace {

// Exit codes: the table both tools share (tools/common/cli.h; man/hct-cache.1, EXIT STATUS).
constexpr int kExitOk = hct::cli::kOk;
constexpr int kExitProblems = hct::cli::kProblems;
constexpr int kExitUsage = hct::cli::kUsage;
// Above this a --threads value is a typo, and would only exhaust memory with thread stacks.
constexpr int kMaxThreads = 1024;

int Fail(const hct::Status& s) {
  std::fprintf(stderr, "hct-cache: %s\n", hct::cli::Escape(s.ToString()).c_str());
  return hct::cli::ExitFor(s);
}

int UsageError(const std::string& command, const std::string& msg) {
  std::fprintf(stderr, "hct-cache %s: %s\n", command.c_str(), hct::cli::Escape(msg).c_str());
  return kExitUsage;
}

const char* kUsage = R"(usage: hct-cache [--cache-dir DIR] [--json] COMMAND [ARGS]

commands:
  warm SOURCE [--tensors GLOB] [--threads N] [--force] [--name NAME]
  verify [MODEL] [--quick | --deep] [--repair] [--threads N]
  evict (--max-size SIZE | --model M | --all) [--dry-run]
  pin MODEL | unpin MODEL
  ls [MODEL] [--entries | --tensors]
  stat
  gc
  config [--max-size SIZE | --no-max-size]

Sizes: 500G, 1.5T, 64M (powers of 1024). See hct-cache(1).
)";

std::string Time(int64_t unix_s) {
  if (unix_s == 0) return "never";
  char b[32];
  std::time_t t = unix_s;
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return b;
}

// The progress bar both tools draw (tools/common/progress.h), fed from several warm or verify
// workers: one lock around it.
class ProgressBar {
 public:
  ProgressBar(bool on, std::string phase) : bar_(on), phase_(std::move(phase)) {}
  void Update(uint64_t done, uint64_t total, uint64_t items_done, uint64_t items_total,
              const std::string& label) {
    std::lock_guard lk(mu_);
    hct::Progress p;
    p.phase = phase_;
    p.bytes_done = done, p.bytes_total = total;
    p.tensors_done = items_done, p.tensors_total = items_total;
    p.current = hct::cli::Escape(label);
    p.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    bar_.Update(p);
  }
  // Clears the line before the result is printed.
  void Finish() {
    std::lock_guard lk(mu_);
    bar_.Finish();
  }

 private:
  hct::cli::ProgressBar bar_;
  std::string phase_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Names from the index or a source file, printed for a terminal (JSON output escapes itself).
std::string Esc(const std::string& s) { return hct::cli::Escape(s); }

json EntryJson(const hct::EntryInfo& e) {
  return {{"model", e.model}, {"path", e.path}, {"source_file", e.source_file},
          {"layer", e.layer ? json(*e.layer) : json(nullptr)}, {"size", e.size},
          {"tensors", e.tensors}, {"pinned", e.pinned}, {"warmed_at", e.warmed_at},
          {"last_access", e.last_access}, {"access_count", e.access_count}};
}

const char* KindName(hct::VerifyProblem::Kind k) {
  switch (k) {
    case hct::VerifyProblem::kMissing: return "missing";
    case hct::VerifyProblem::kCorrupt: return "corrupt";
    case hct::VerifyProblem::kOrphan: return "orphan";
    case hct::VerifyProblem::kTemp: return "temp";
  }
  return "?";
}

// The budget is stored as a signed SQLite integer: larger sizes would be cut (10000P read back
// as 8192P).
hct::Result<uint64_t> Size(const std::string& s) {
  return hct::ParseSize(s, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
}

// Values the option parser accepts but the tool must not: an empty --cache-dir would fall back
// to the home cache, an empty --max-size would mean "not given", --threads out of range.
hct::Status CheckOptions(const po::variables_map& vm,
                         const po::variables_map& cvm, int threads) {
  if (vm.count("cache-dir") && vm["cache-dir"].as<std::string>().empty())
    return hct::Status::InvalidArgument("--cache-dir is an empty path");
  if (threads < 0 || threads > kMaxThreads)
    return hct::Status::InvalidArgument("--threads must be in 0.." + std::to_string(kMaxThreads));
  for (const char* k : {"max-size", "source", "model", "name"})
    if (cvm.count(k) && cvm[k].as<std::string>().empty())
      return hct::Status::InvalidArgument(std::string(k) + " is empty");
  if (cvm.count("max-size")) HCT_RETURN_IF_ERROR(Size(cvm["max-size"].as<std::string>()).status());
  return hct::Status::OK();
}

int Run(int argc, char** argv) {
  po::options_description global("global options");
  std::string cache_dir, command;
  bool as_json = false;
  global.add_options()("help,h", "show help")("cache-dir", po::value(&cache_dir),
                                                 "cache directory")(
      "json", po::bool_switch(&as_json), "machine-readable output")(
      "command", po::value(&command), "")("args", po::value<std::vector<std::string>>(), "");
  po::positional_options_description pos;
  pos.add("command", 1).add("args", -1);
  po::variables_map vm;
  po::parsed_options parsed =
      po::command_line_parser(argc, argv).options(global).positional(pos).allow_unregistered().run();
  po::store(parsed, vm);
  po::notify(vm);
  if (vm.count("help") && command.empty()) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (command.empty()) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  // Everything after the command, for the command's own parser.
  std::vector<std::string> rest = po::collect_unrecognized(parsed.options, po::include_positional);
  rest.erase(rest.begin());  // the command itself
  if (vm.count("help")) rest.push_back("--help");

  po::options_description opts(command + " options");
  std::string source, model, tensors, max_size, name;
  int threads = 0;
  bool force = false, quick = false, deep = false, repair = false, all = false, dry = false;
  bool entries = false, list_tensors = false, no_max = false;
  opts.add_options()("help,h", "show help");
  po::positional_options_description cpos;
  if (command == "warm") {
    opts.add_options()("source", po::value(&source)->required(), "model to warm")(
        "tensors", po::value(&tensors), "glob over tensor names")(
        "threads", po::value(&threads), "worker threads (0: all cores)")(
        "force", po::bool_switch(&force), "rewrite entries already warm")(
        "name", po::value(&name), "model name in the cache");
    cpos.add("source", 1);
  } else if (command == "verify") {
    opts.add_options()("model", po::value(&model), "only this model")(
        "quick", po::bool_switch(&quick), "presence and sizes (default)")(
        "deep", po::bool_switch(&deep), "recompute every checksum")(
        "repair", po::bool_switch(&repair), "re-warm or drop bad entries, delete orphans")(
        "threads", po::value(&threads), "worker threads");
    cpos.add("model", 1);
  } else if (command == "evict") {
    opts.add_options()("max-size", po::value(&max_size), "evict LRU entries down to SIZE")(
        "model", po::value(&model), "evict this model")("all", po::bool_switch(&all),
                                                        "evict everything unpinned")(
        "dry-run", po::bool_switch(&dry), "only list what would go");
  } else if (command == "pin" || command == "unpin") {
    opts.add_options()("model", po::value(&model)->required(), "model");
    cpos.add("model", 1);
  } else if (command == "ls") {
    opts.add_options()("model", po::value(&model), "only this model")(
        "entries", po::bool_switch(&entries), "list entry files")(
        "tensors", po::bool_switch(&list_tensors), "list tensors");
    cpos.add("model", 1);
  } else if (command == "config") {
    opts.add_options()("max-size", po::value(&max_size), "set the size budget")(
        "no-max-size", po::bool_switch(&no_max), "remove the size budget");
  } else if (command != "stat" && command != "gc") {
    std::fprintf(stderr, "hct-cache: unknown command '%s'\n%s", command.c_str(), kUsage);
    return kExitUsage;
  }
  po::variables_map cvm;
  try {
    po::store(po::command_line_parser(rest).options(opts).positional(cpos).run(), cvm);
    if (cvm.count("help")) {
      std::cout << kUsage << "\n" << opts;
      return kExitOk;
    }
    po::notify(cvm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "hct-cache %s: %s\n", command.c_str(), e.what());
    return kExitUsage;
  }

  if (hct::Status s = CheckOptions(vm, cvm, threads); !s.ok())
    return UsageError(command, s.message());
  auto dir = hct::ResolveCacheDir(cache_dir);
  if (!dir.ok()) return Fail(dir.status());
  bool read_only = command == "ls" || command == "stat" || (command == "verify" && !repair) ||
                   (command == "evict" && dry) || (command == "config" && max_size.empty() && !no_max);
  hct::OpenOptions oo;
  oo.read_only = read_only;
  oo.cleanup = command != "gc";  // gc does the cleanup itself, and reports what it removed
  auto opened = hct::Cache::Open(*dir, oo);
  if (!opened.ok() && read_only && opened.status().code() == hct::Code::kNotFound) {
    oo.read_only = false;  // no cache yet: create an empty one so listings work
    opened = hct::Cache::Open(*dir, oo);
  }
  if (!opened.ok()) return Fail(opened.status());
  hct::Cache& cache = **opened;

  if (command == "warm") {
    ProgressBar bar(!as_json, "warm");
    hct::WarmOptions wo;
    wo.tensors = tensors;
    wo.threads = threads;
    wo.force = force;
    wo.model_name = name;
    wo.progress = [&](const hct::WarmProgress& p) {
      bar.Update(p.done_bytes, p.total_bytes, p.done_tensors, p.total_tensors, p.current);
    };
    auto r = cache.Warm(source, wo);
    bar.Finish();
    if (!r.ok()) return Fail(r.status());
    if (as_json) {
      std::cout << json{{"model", r->model}, {"entries_written", r->entries_written},
                        {"entries_skipped", r->entries_skipped},
                        {"tensors_written", r->tensors_written},
                        {"tensors_skipped", r->tensors_skipped},
                        {"bytes_written", r->bytes_written}, {"seconds", r->seconds},
                        {"evicted", r->evicted}, {"over_budget", r->over_budget}}
                       .dump(2)
                << "\n";
    } else {
      std::printf("%s: %llu entries written (%s, %llu tensors), %llu skipped, %.2f s, %.0f MB/s\n",
                  r->model.c_str(), static_cast<unsigned long long>(r->entries_written),
                  hct::FormatSize(r->bytes_written).c_str(),
                  static_cast<unsigned long long>(r->tensors_written),
                  static_cast<unsigned long long>(r->entries_skipped), r->seconds,
                  r->seconds > 0 ? r->bytes_written / r->seconds / 1e6 : 0.0);
      if (!r->evicted.empty()) std::printf("evicted %zu entries to stay within the budget\n", r->evicted.size());
      if (r->over_budget) std::printf("warning: the cache is above its size budget\n");
    }
    return kExitOk;
  }
  if (command == "verify") {
    if (quick && deep) {
      std::fprintf(stderr, "hct-cache verify: --quick and --deep exclude each other\n");
      return kExitUsage;
    }
    ProgressBar bar(!as_json && deep, "verify");
    hct::VerifyOptions vo;
    vo.model = model;
    vo.mode = deep ? hct::VerifyMode::kDeep : hct::VerifyMode::kQuick;
    vo.repair = repair;
    vo.threads = threads;
    vo.progress = [&](uint64_t d, uint64_t t) { bar.Update(d, t, 0, 0, ""); };
    auto r = cache.Verify(vo);
    bar.Finish();
    if (!r.ok()) return Fail(r.status());
    if (as_json) {
      json probs = json::array();
      for (const auto& p : r->problems)
        probs.push_back({{"kind", KindName(p.kind)}, {"path", p.path}, {"tensor", p.tensor},
                         {"detail", p.detail}, {"action", p.action}});
      std::cout << json{{"ok", r->ok()}, {"entries", r->entries_checked},
                        {"tensors", r->tensors_checked}, {"bytes", r->bytes_checked},
                        {"seconds", r->seconds}, {"problems", probs}, {"repaired", r->repaired}}
                       .dump(2)
                << "\n";
    } else {
      for (const auto& p : r->problems)
        std::printf("%s %s%s%s: %s%s%s\n", KindName(p.kind), Esc(p.path).c_str(),
                    p.tensor.empty() ? "" : " tensor ", Esc(p.tensor).c_str(),
                    Esc(p.detail).c_str(), p.action.empty() ? "" : " -> ", p.action.c_str());
      std::printf("%s: %llu entries, %llu tensors%s, %zu problems (%.2f s%s)\n",
                  r->ok() ? "ok" : (repair && r->repaired) ? "repaired" : "FAILED", static_cast<unsigned long long>(r->entries_checked),
                  static_cast<unsigned long long>(r->tensors_checked),
                  deep ? (", " + hct::FormatSize(r->bytes_checked) + " hashed").c_str() : "",
                  r->problems.size(), r->seconds,
                  deep && r->seconds > 0
                      ? (", " + std::to_string(static_cast<int>(r->bytes_checked / r->seconds / 1e6)) + " MB/s").c_str()
                      : "");
    }
    return r->ok() || (repair && r->repaired) ? kExitOk : kExitProblems;
  }
  if (command == "evict") {
    hct::EvictOptions eo;
    if (!max_size.empty()) {
      auto s = Size(max_size);
      if (!s.ok()) return Fail(s.status());
      eo.max_size = *s;
    }
    eo.model = model;
    eo.all = all;
    eo.dry_run = dry;
    auto r = cache.Evict(eo);
    if (!r.ok()) return Fail(r.status());
    if (as_json) {
      json ev = json::array();
      for (const auto& e : r->evicted) ev.push_back(EntryJson(e));
      std::cout << json{{"dry_run", dry}, {"evicted", ev}, {"leased", r->leased},
                        {"pinned_skipped", r->pinned_skipped}, {"bytes_freed", r->bytes_freed},
                        {"bytes_after", r->bytes_after}, {"target_reached", r->target_reached}}
                       .dump(2)
                << "\n";
    } else {
      for (const auto& e : r->evicted)
        std::printf("%s %s (%s)\n", dry ? "would evict" : "evicted", e.path.c_str(),
                    hct::FormatSize(e.size).c_str());
      for (const auto& l : r->leased) std::printf("leased, kept: %s\n", l.c_str());
      std::printf("%s %s; %s left%s\n", dry ? "would free" : "freed",
                  hct::FormatSize(r->bytes_freed).c_str(), hct::FormatSize(r->bytes_after).c_str(),
                  r->target_reached ? "" : " (target not reached: pinned or leased entries)");
    }
    return r->target_reached ? kExitOk : kExitProblems;
  }
  if (command == "pin" || command == "unpin") {
    hct::Status s = command == "pin" ? cache.Pin(model) : cache.Unpin(model);
    if (!s.ok()) return Fail(s);
    if (as_json) std::cout << json{{"model", model}, {"pinned", command == "pin"}}.dump() << "\n";
    return kExitOk;
  }
  if (command == "ls") {
    if (list_tensors) {
      auto ts = cache.ListTensors(model);
      if (!ts.ok()) return Fail(ts.status());
      json arr = json::array();
      for (const auto& t : *ts) {
        if (as_json) {
          arr.push_back({{"model", t.model}, {"name", t.name}, {"path", t.path},
                         {"offset", t.offset}, {"length", t.length},
                         {"dtype", std::string(hct::DTypeName(t.dtype))}, {"shape", t.shape},
                         {"xxh3", t.xxh3}, {"source_xxh3", t.source_xxh3},
                         {"layer", t.layer ? json(*t.layer) : json(nullptr)}});
        } else {
          std::printf("%-12s %-50s %-6s %10s  %s@%llu\n", Esc(t.model).c_str(), Esc(t.name).c_str(),
                      std::string(hct::DTypeName(t.dtype)).c_str(),
                      hct::FormatSize(t.length).c_str(), t.path.c_str(),
                      static_cast<unsigned long long>(t.offset));
        }
      }
      if (as_json) std::cout << arr.dump(2) << "\n";
      return kExitOk;
    }
    if (entries) {
      auto es = cache.ListEntries(model);
      if (!es.ok()) return Fail(es.status());
      json arr = json::array();
      for (const auto& e : *es) {
        if (as_json) arr.push_back(EntryJson(e));
        else
          std::printf("%-12s %8s %4llu tensors %s %6llu hits %s%s\n", e.model.c_str(),
                      hct::FormatSize(e.size).c_str(), static_cast<unsigned long long>(e.tensors),
                      e.layer ? ("layer " + std::to_string(*e.layer)).c_str() : "other  ",
                      static_cast<unsigned long long>(e.access_count), e.path.c_str(),
                      e.pinned ? " [pinned]" : "");
      }
      if (as_json) std::cout << arr.dump(2) << "\n";
      return kExitOk;
    }
    auto ms = cache.ListModels();
    if (!ms.ok()) return Fail(ms.status());
    if (!model.empty() && std::none_of(ms->begin(), ms->end(),
                                       [&](const hct::ModelInfo& m) { return m.name == model; }))
      return Fail(hct::Status::NotFound("model '" + model + "' is not in the cache " + *dir));
    json arr = json::array();
    for (const auto& m : *ms) {
      if (!model.empty() && m.name != model) continue;
      if (as_json) {
        arr.push_back({{"name", m.name}, {"source", m.source}, {"source_kind", m.source_kind},
                       {"pinned", m.pinned}, {"entries", m.entries}, {"tensors", m.tensors},
                       {"bytes", m.bytes}, {"access_count", m.access_count},
                       {"last_access", m.last_access}, {"warmed_at", m.warmed_at}});
      } else {
        std::printf("%-20s %8s %5llu tensors %5llu entries %8llu hits  last used %s%s  %s\n",
                    m.name.c_str(), hct::FormatSize(m.bytes).c_str(),
                    static_cast<unsigned long long>(m.tensors),
                    static_cast<unsigned long long>(m.entries),
                    static_cast<unsigned long long>(m.access_count), Time(m.last_access).c_str(),
                    m.pinned ? " [pinned]" : "", m.source.c_str());
      }
    }
    if (as_json) std::cout << arr.dump(2) << "\n";
    return kExitOk;
  }
  if (command == "stat") {
    auto s = cache.Stat();
    if (!s.ok()) return Fail(s.status());
    if (as_json) {
      std::cout << json{{"dir", s->dir}, {"models", s->models}, {"entries", s->entries},
                        {"tensors", s->tensors}, {"bytes", s->bytes},
                        {"pinned_bytes", s->pinned_bytes}, {"access_count", s->access_count},
                        {"max_size", s->max_size ? json(*s->max_size) : json(nullptr)},
                        {"schema_version", s->schema_version}}
                       .dump(2)
                << "\n";
    } else {
      std::printf("cache      %s\nmodels     %llu\nentries    %llu\ntensors    %llu\nbytes      %s"
                  " (%s pinned)\nhits       %llu\nbudget     %s%s\n",
                  s->dir.c_str(), static_cast<unsigned long long>(s->models),
                  static_cast<unsigned long long>(s->entries),
                  static_cast<unsigned long long>(s->tensors), hct::FormatSize(s->bytes).c_str(),
                  hct::FormatSize(s->pinned_bytes).c_str(),
                  static_cast<unsigned long long>(s->access_count),
                  s->max_size ? hct::FormatSize(*s->max_size).c_str() : "unlimited",
                  s->max_size && *s->max_size
                      ? (" (" + std::to_string(100 * s->bytes / *s->max_size) + "% used)").c_str()
                      : "");
    }
    return kExitOk;
  }
  if (command == "gc") {
    auto r = cache.Gc();
    if (!r.ok()) return Fail(r.status());
    if (as_json) {
      std::cout << json{{"temp_files_removed", r->temp_files_removed},
                        {"orphans_removed", r->orphans_removed},
                        {"dangling_rows_dropped", r->dangling_rows_dropped},
                        {"skipped_busy", r->skipped_busy}}
                       .dump(2)
                << "\n";
    } else {
      for (const auto& p : r->temp_files_removed) std::printf("removed temp %s\n", p.c_str());
      for (const auto& p : r->orphans_removed) std::printf("removed orphan %s\n", p.c_str());
      for (const auto& p : r->dangling_rows_dropped) std::printf("dropped row for missing %s\n", p.c_str());
      if (r->skipped_busy) std::printf("a warm is running: temp files and orphans left alone\n");
    }
    return kExitOk;
  }
  if (command == "config") {
    if (!max_size.empty() && no_max) {
      std::fprintf(stderr, "hct-cache config: --max-size and --no-max-size exclude each other\n");
      return kExitUsage;
    }
    if (!max_size.empty()) {
      auto s = Size(max_size);
      if (!s.ok()) return Fail(s.status());
      if (auto st = cache.SetMaxSize(*s); !st.ok()) return Fail(st);
    } else if (no_max) {
      if (auto st = cache.SetMaxSize(std::nullopt); !st.ok()) return Fail(st);
    }
    auto m = cache.MaxSize();
    if (!m.ok()) return Fail(m.status());
    if (as_json) std::cout << json{{"max_size", *m ? json(**m) : json(nullptr)}}.dump() << "\n";
    else std::printf("max-size %s\n", *m ? hct::FormatSize(**m).c_str() : "unlimited");
    return kExitOk;
  }
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  return hct::cli::GuardedMain("hct-cache", [&] {
    try {
      return Run(argc, argv);
    } catch (const po::error& e) {
      std::fprintf(stderr, "hct-cache: %s\n%s", hct::cli::Escape(e.what()).c_str(), kUsage);
      return kExitUsage;
    }
  });
}
