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
    hct::cli::ProgressState p;
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

// Everything printed for a terminal goes through Out: names from the index or from a source
// (models, tensors, source and entry paths) may hold control characters (issue 10 item 17), so
// the whole text is escaped (hct::cli::EscapeText keeps the line breaks of the format).
template <class... A>
void Out(const char* fmt, A... args) {
  int n = std::snprintf(nullptr, 0, fmt, args...);
  if (n <= 0) return;
  std::string text(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(text.data(), text.size(), fmt, args...);
  text.pop_back();
  std::fputs(hct::cli::EscapeText(text).c_str(), stdout);
}

// JSON escapes control characters itself; bytes that are not UTF-8 are replaced rather than
// thrown about (a crafted name in the index must not make a listing fail).
void OutJson(const json& j, int indent = 2) {
  std::cout << j.dump(indent, ' ', false, json::error_handler_t::replace) << "\n";
}

using ull = unsigned long long;

struct Args {
  std::string cache_dir, command;
  bool as_json = false;
  std::string source, model, tensors, max_size, name;
  int threads = 0;
  bool force = false, quick = false, deep = false, repair = false, all = false, dry = false;
  bool entries = false, list_tensors = false, no_max = false;
};

// The options of `a.command`; false for an unknown command.
bool CommandOptions(Args& a, po::options_description& opts, po::positional_options_description& cpos) {
  const std::string& c = a.command;
  opts.add_options()("help,h", "show help");
  if (c == "warm") {
    opts.add_options()("source", po::value(&a.source)->required(), "model to warm")(
        "tensors", po::value(&a.tensors), "glob over tensor names")(
        "threads", po::value(&a.threads), "worker threads (0: all cores)")(
        "force", po::bool_switch(&a.force), "rewrite entries already warm")(
        "name", po::value(&a.name), "model name in the cache");
    cpos.add("source", 1);
  } else if (c == "verify") {
    opts.add_options()("model", po::value(&a.model), "only this model")(
        "quick", po::bool_switch(&a.quick), "presence and sizes (default)")(
        "deep", po::bool_switch(&a.deep), "recompute every checksum")(
        "repair", po::bool_switch(&a.repair), "re-warm or drop bad entries, delete orphans")(
        "threads", po::value(&a.threads), "worker threads");
    cpos.add("model", 1);
  } else if (c == "evict") {
    opts.add_options()("max-size", po::value(&a.max_size), "evict LRU entries down to SIZE")(
        "model", po::value(&a.model), "evict this model")("all", po::bool_switch(&a.all),
                                                          "evict everything unpinned")(
        "dry-run", po::bool_switch(&a.dry), "only list what would go");
  } else if (c == "pin" || c == "unpin") {
    opts.add_options()("model", po::value(&a.model)->required(), "model");
    cpos.add("model", 1);
  } else if (c == "ls") {
    opts.add_options()("model", po::value(&a.model), "only this model")(
        "entries", po::bool_switch(&a.entries), "list entry files")(
        "tensors", po::bool_switch(&a.list_tensors), "list tensors");
    cpos.add("model", 1);
  } else if (c == "config") {
    opts.add_options()("max-size", po::value(&a.max_size), "set the size budget")(
        "no-max-size", po::bool_switch(&a.no_max), "remove the size budget");
  } else if (c != "stat" && c != "gc") {
    return false;
  }
  return true;
}

// Parses the command line into *a. Returns -1 to go on, else the exit code.
int ParseArgs(int argc, char** argv, Args* a) {
  po::options_description global("global options");
  global.add_options()("help,h", "show help")("cache-dir", po::value(&a->cache_dir),
                                                 "cache directory")(
      "json", po::bool_switch(&a->as_json), "machine-readable output")(
      "command", po::value(&a->command), "")("args", po::value<std::vector<std::string>>(), "");
  po::positional_options_description pos;
  pos.add("command", 1).add("args", -1);
  po::variables_map vm;
  po::parsed_options parsed =
      po::command_line_parser(argc, argv).options(global).positional(pos).allow_unregistered().run();
  po::store(parsed, vm);
  po::notify(vm);
  if (vm.count("help") && a->command.empty()) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (a->command.empty()) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  // Everything after the command, for the command's own parser.
  std::vector<std::string> rest = po::collect_unrecognized(parsed.options, po::include_positional);
  rest.erase(rest.begin());  // the command itself
  if (vm.count("help")) rest.push_back("--help");
  po::options_description opts(a->command + " options");
  po::positional_options_description cpos;
  if (!CommandOptions(*a, opts, cpos)) {
    std::fprintf(stderr, "hct-cache: unknown command '%s'\n%s", Esc(a->command).c_str(), kUsage);
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
    std::fprintf(stderr, "hct-cache %s: %s\n", Esc(a->command).c_str(), Esc(e.what()).c_str());
    return kExitUsage;
  }
  if (hct::Status s = CheckOptions(vm, cvm, a->threads); !s.ok())
    return UsageError(a->command, s.message());
  if (a->quick && a->deep) return UsageError("verify", "--quick and --deep exclude each other");
  if (!a->max_size.empty() && a->no_max)
    return UsageError("config", "--max-size and --no-max-size exclude each other");
  return -1;
}

int Warm(hct::Cache& cache, const Args& a) {
  ProgressBar bar(!a.as_json, "warm");
  hct::WarmOptions wo;
  wo.tensors = a.tensors;
  wo.threads = a.threads;
  wo.force = a.force;
  wo.model_name = a.name;
  wo.progress = [&](const hct::WarmProgress& p) {
    bar.Update(p.done_bytes, p.total_bytes, p.done_tensors, p.total_tensors, p.current);
  };
  auto r = cache.Warm(a.source, wo);
  bar.Finish();
  if (!r.ok()) return Fail(r.status());
  if (a.as_json) {
    OutJson({{"model", r->model}, {"entries_written", r->entries_written},
             {"entries_skipped", r->entries_skipped}, {"tensors_written", r->tensors_written},
             {"tensors_skipped", r->tensors_skipped}, {"bytes_written", r->bytes_written},
             {"seconds", r->seconds}, {"evicted", r->evicted}, {"over_budget", r->over_budget}});
    return kExitOk;
  }
  Out("%s: %llu entries written (%s, %llu tensors), %llu skipped, %.2f s, %.0f MB/s\n",
      r->model.c_str(), ull(r->entries_written), hct::FormatSize(r->bytes_written).c_str(),
      ull(r->tensors_written), ull(r->entries_skipped), r->seconds,
      r->seconds > 0 ? r->bytes_written / r->seconds / 1e6 : 0.0);
  if (!r->evicted.empty()) Out("evicted %zu entries to stay within the budget\n", r->evicted.size());
  if (r->over_budget) Out("warning: the cache is above its size budget\n");
  return kExitOk;
}

int Verify(hct::Cache& cache, const Args& a) {
  ProgressBar bar(!a.as_json && a.deep, "verify");
  hct::VerifyOptions vo;
  vo.model = a.model;
  vo.mode = a.deep ? hct::VerifyMode::kDeep : hct::VerifyMode::kQuick;
  vo.repair = a.repair;
  vo.threads = a.threads;
  vo.progress = [&](uint64_t d, uint64_t t) { bar.Update(d, t, 0, 0, ""); };
  auto r = cache.Verify(vo);
  bar.Finish();
  if (!r.ok()) return Fail(r.status());
  const int rc = r->ok() || (a.repair && r->repaired) ? kExitOk : kExitProblems;
  if (a.as_json) {
    json probs = json::array();
    for (const auto& p : r->problems)
      probs.push_back({{"kind", KindName(p.kind)}, {"path", p.path}, {"tensor", p.tensor},
                       {"detail", p.detail}, {"action", p.action}});
    OutJson({{"ok", r->ok()}, {"entries", r->entries_checked}, {"tensors", r->tensors_checked},
             {"bytes", r->bytes_checked}, {"seconds", r->seconds}, {"problems", probs},
             {"repaired", r->repaired}});
    return rc;
  }
  for (const auto& p : r->problems)
    Out("%s %s%s%s: %s%s%s\n", KindName(p.kind), p.path.c_str(), p.tensor.empty() ? "" : " tensor ",
        p.tensor.c_str(), p.detail.c_str(), p.action.empty() ? "" : " -> ", p.action.c_str());
  std::string hashed = a.deep ? ", " + hct::FormatSize(r->bytes_checked) + " hashed" : "";
  std::string rate = a.deep && r->seconds > 0
                         ? ", " + std::to_string(static_cast<int>(r->bytes_checked / r->seconds / 1e6)) + " MB/s"
                         : "";
  Out("%s: %llu entries, %llu tensors%s, %zu problems (%.2f s%s)\n",
      r->ok() ? "ok" : (a.repair && r->repaired) ? "repaired" : "FAILED", ull(r->entries_checked),
      ull(r->tensors_checked), hashed.c_str(), r->problems.size(), r->seconds, rate.c_str());
  return rc;
}

int Evict(hct::Cache& cache, const Args& a) {
  hct::EvictOptions eo;
  if (!a.max_size.empty()) {
    auto s = Size(a.max_size);
    if (!s.ok()) return Fail(s.status());
    eo.max_size = *s;
  }
  eo.model = a.model;
  eo.all = a.all;
  eo.dry_run = a.dry;
  auto r = cache.Evict(eo);
  if (!r.ok()) return Fail(r.status());
  if (a.as_json) {
    json ev = json::array();
    for (const auto& e : r->evicted) ev.push_back(EntryJson(e));
    OutJson({{"dry_run", a.dry}, {"evicted", ev}, {"leased", r->leased},
             {"pinned_skipped", r->pinned_skipped}, {"bytes_freed", r->bytes_freed},
             {"bytes_after", r->bytes_after}, {"target_reached", r->target_reached}});
  } else {
    for (const auto& e : r->evicted)
      Out("%s %s (%s)\n", a.dry ? "would evict" : "evicted", e.path.c_str(),
          hct::FormatSize(e.size).c_str());
    for (const auto& l : r->leased) Out("leased, kept: %s\n", l.c_str());
    Out("%s %s; %s left%s\n", a.dry ? "would free" : "freed",
        hct::FormatSize(r->bytes_freed).c_str(), hct::FormatSize(r->bytes_after).c_str(),
        r->target_reached ? "" : " (target not reached: pinned or leased entries)");
  }
  return r->target_reached ? kExitOk : kExitProblems;
}

int Pin(hct::Cache& cache, const Args& a) {
  const bool pin = a.command == "pin";
  hct::Status s = pin ? cache.Pin(a.model) : cache.Unpin(a.model);
  if (!s.ok()) return Fail(s);
  if (a.as_json) OutJson({{"model", a.model}, {"pinned", pin}}, -1);
  return kExitOk;
}

int LsTensors(hct::Cache& cache, const Args& a) {
  auto ts = cache.ListTensors(a.model);
  if (!ts.ok()) return Fail(ts.status());
  json arr = json::array();
  for (const auto& t : *ts) {
    if (a.as_json) {
      arr.push_back({{"model", t.model}, {"name", t.name}, {"path", t.path}, {"offset", t.offset},
                     {"length", t.length}, {"dtype", std::string(hct::DTypeName(t.dtype))},
                     {"shape", t.shape}, {"xxh3", t.xxh3}, {"source_xxh3", t.source_xxh3},
                     {"layer", t.layer ? json(*t.layer) : json(nullptr)}});
    } else {
      Out("%-12s %-50s %-6s %10s  %s@%llu\n", t.model.c_str(), t.name.c_str(),
          std::string(hct::DTypeName(t.dtype)).c_str(), hct::FormatSize(t.length).c_str(),
          t.path.c_str(), ull(t.offset));
    }
  }
  if (a.as_json) OutJson(arr);
  return kExitOk;
}

int LsEntries(hct::Cache& cache, const Args& a) {
  auto es = cache.ListEntries(a.model);
  if (!es.ok()) return Fail(es.status());
  json arr = json::array();
  for (const auto& e : *es) {
    if (a.as_json) {
      arr.push_back(EntryJson(e));
      continue;
    }
    std::string layer = e.layer ? "layer " + std::to_string(*e.layer) : "other  ";
    Out("%-12s %8s %4llu tensors %s %6llu hits %s%s\n", e.model.c_str(),
        hct::FormatSize(e.size).c_str(), ull(e.tensors), layer.c_str(), ull(e.access_count),
        e.path.c_str(), e.pinned ? " [pinned]" : "");
  }
  if (a.as_json) OutJson(arr);
  return kExitOk;
}

int Ls(hct::Cache& cache, const Args& a, const std::string& dir) {
  if (a.list_tensors) return LsTensors(cache, a);
  if (a.entries) return LsEntries(cache, a);
  auto ms = cache.ListModels();
  if (!ms.ok()) return Fail(ms.status());
  if (!a.model.empty() && std::none_of(ms->begin(), ms->end(),
                                       [&](const hct::ModelInfo& m) { return m.name == a.model; }))
    return Fail(hct::Status::NotFound("model '" + a.model + "' is not in the cache " + dir));
  json arr = json::array();
  for (const auto& m : *ms) {
    if (!a.model.empty() && m.name != a.model) continue;
    if (a.as_json) {
      arr.push_back({{"name", m.name}, {"source", m.source}, {"source_kind", m.source_kind},
                     {"pinned", m.pinned}, {"entries", m.entries}, {"tensors", m.tensors},
                     {"bytes", m.bytes}, {"access_count", m.access_count},
                     {"last_access", m.last_access}, {"warmed_at", m.warmed_at}});
      continue;
    }
    Out("%-20s %8s %5llu tensors %5llu entries %8llu hits  last used %s%s  %s\n", m.name.c_str(),
        hct::FormatSize(m.bytes).c_str(), ull(m.tensors), ull(m.entries), ull(m.access_count),
        Time(m.last_access).c_str(), m.pinned ? " [pinned]" : "", m.source.c_str());
  }
  if (a.as_json) OutJson(arr);
  return kExitOk;
}

int Stat(hct::Cache& cache, const Args& a) {
  auto s = cache.Stat();
  if (!s.ok()) return Fail(s.status());
  if (a.as_json) {
    OutJson({{"dir", s->dir}, {"models", s->models}, {"entries", s->entries},
             {"tensors", s->tensors}, {"bytes", s->bytes}, {"pinned_bytes", s->pinned_bytes},
             {"access_count", s->access_count},
             {"max_size", s->max_size ? json(*s->max_size) : json(nullptr)},
             {"schema_version", s->schema_version}});
    return kExitOk;
  }
  std::string used = s->max_size && *s->max_size
                         ? " (" + std::to_string(100 * s->bytes / *s->max_size) + "% used)"
                         : "";
  Out("cache      %s\nmodels     %llu\nentries    %llu\ntensors    %llu\nbytes      %s"
      " (%s pinned)\nhits       %llu\nbudget     %s%s\n",
      s->dir.c_str(), ull(s->models), ull(s->entries), ull(s->tensors),
      hct::FormatSize(s->bytes).c_str(), hct::FormatSize(s->pinned_bytes).c_str(),
      ull(s->access_count), s->max_size ? hct::FormatSize(*s->max_size).c_str() : "unlimited",
      used.c_str());
  return kExitOk;
}

int Gc(hct::Cache& cache, const Args& a) {
  auto r = cache.Gc();
  if (!r.ok()) return Fail(r.status());
  if (a.as_json) {
    OutJson({{"temp_files_removed", r->temp_files_removed},
             {"orphans_removed", r->orphans_removed},
             {"dangling_rows_dropped", r->dangling_rows_dropped},
             {"skipped_busy", r->skipped_busy}});
    return kExitOk;
  }
  for (const auto& p : r->temp_files_removed) Out("removed temp %s\n", p.c_str());
  for (const auto& p : r->orphans_removed) Out("removed orphan %s\n", p.c_str());
  for (const auto& p : r->dangling_rows_dropped) Out("dropped row for missing %s\n", p.c_str());
  if (r->skipped_busy) Out("a warm is running: temp files and orphans left alone\n");
  return kExitOk;
}

int Config(hct::Cache& cache, const Args& a) {
  if (!a.max_size.empty()) {
    auto s = Size(a.max_size);
    if (!s.ok()) return Fail(s.status());
    if (auto st = cache.SetMaxSize(*s); !st.ok()) return Fail(st);
  } else if (a.no_max) {
    if (auto st = cache.SetMaxSize(std::nullopt); !st.ok()) return Fail(st);
  }
  auto m = cache.MaxSize();
  if (!m.ok()) return Fail(m.status());
  if (a.as_json) OutJson({{"max_size", *m ? json(**m) : json(nullptr)}}, -1);
  else Out("max-size %s\n", *m ? hct::FormatSize(**m).c_str() : "unlimited");
  return kExitOk;
}

int Run(int argc, char** argv) {
  Args a;
  if (int rc = ParseArgs(argc, argv, &a); rc >= 0) return rc;
  auto dir = hct::ResolveCacheDir(a.cache_dir);
  if (!dir.ok()) return Fail(dir.status());
  const std::string& c = a.command;
  bool read_only = c == "ls" || c == "stat" || (c == "verify" && !a.repair) ||
                   (c == "evict" && a.dry) || (c == "config" && a.max_size.empty() && !a.no_max);
  hct::OpenOptions oo;
  oo.read_only = read_only;
  oo.cleanup = c != "gc";  // gc does the cleanup itself, and reports what it removed
  auto opened = hct::Cache::Open(*dir, oo);
  if (!opened.ok() && read_only && opened.status().code() == hct::Code::kNotFound) {
    oo.read_only = false;  // no cache yet: create an empty one so listings work
    opened = hct::Cache::Open(*dir, oo);
  }
  if (!opened.ok()) return Fail(opened.status());
  hct::Cache& cache = **opened;
  if (c == "warm") return Warm(cache, a);
  if (c == "verify") return Verify(cache, a);
  if (c == "evict") return Evict(cache, a);
  if (c == "pin" || c == "unpin") return Pin(cache, a);
  if (c == "ls") return Ls(cache, a, *dir);
  if (c == "stat") return Stat(cache, a);
  if (c == "gc") return Gc(cache, a);
  if (c == "config") return Config(cache, a);
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
