// RuntimeOptions: defaults, the HCT_* environment overlay and validation. The settings table
// (names, defaults, meaning) is docs/runtime.md "Settings"; keep it in step with this file.
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>

#include "hct/runtime.h"
#include "hct/units.h"

namespace hct {
namespace {

// "64M", "1.5G", "4096", "2GiB" -> bytes: the project's one size parser (hct/units.h).
std::optional<uint64_t> ParseBytes(const std::string& t) {
  auto r = ParseSize(t);
  return r.ok() ? std::optional<uint64_t>(*r) : std::nullopt;
}

std::optional<bool> ParseBool(std::string t) {
  for (auto& c : t) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (t == "1" || t == "on" || t == "true" || t == "yes") return true;
  if (t == "0" || t == "off" || t == "false" || t == "no") return false;
  return std::nullopt;
}

std::optional<int> ParseInt(const std::string& t) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(t.c_str(), &end, 10);
  if (t.empty() || errno || *end != '\0' || v < -1000000 || v > 1000000) return std::nullopt;
  return int(v);
}

Status BadEnv(const char* var, const std::string& value, const char* want) {
  return Status::InvalidArgument(std::string(var) + "='" + value + "': expected " + want);
}

}  // namespace

Result<RuntimeOptions> RuntimeOptions::FromEnv() { return FromEnv(RuntimeOptions{}); }

Result<RuntimeOptions> RuntimeOptions::FromEnv(RuntimeOptions o) {
  auto env = [](const char* k) -> std::optional<std::string> {
    const char* v = std::getenv(k);
    if (!v) return std::nullopt;
    return std::string(v);
  };
  // Overlays *dst with variable k when it is set; `parse` gives nullopt for a bad value.
  auto overlay = [&](const char* k, auto* dst, auto parse, const char* want) -> Status {
    if (auto v = env(k)) {
      auto x = parse(*v);
      if (!x) return BadEnv(k, *v, want);
      *dst = *x;
    }
    return Status::OK();
  };
  auto size = [&](const char* k, uint64_t* dst) {
    return overlay(k, dst, ParseBytes, "a size such as 256M or 4G");
  };
  auto integer = [&](const char* k, int* dst) { return overlay(k, dst, ParseInt, "an integer"); };
  auto boolean = [&](const char* k, bool* dst) { return overlay(k, dst, ParseBool, "on or off"); };
  HCT_RETURN_IF_ERROR(size("HCT_STAGING_BYTES", &o.staging_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_CHUNK_BYTES", &o.chunk_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_COMPRESSED_SLOT_BYTES", &o.hct_slot_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_COMPRESSED_STAGING_BYTES", &o.hct_staging_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_COPY_STEP", &o.copy_step_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_RESIDENT_BUDGET", &o.resident_budget));
  HCT_RETURN_IF_ERROR(integer("HCT_IO_THREADS", &o.io_threads));
  HCT_RETURN_IF_ERROR(integer("HCT_DECODE_THREADS", &o.decode_threads));
  HCT_RETURN_IF_ERROR(integer("HCT_STREAMS", &o.streams));
  HCT_RETURN_IF_ERROR(integer("HCT_DECODE_STREAMS", &o.hct_decode_streams));
  HCT_RETURN_IF_ERROR(size("HCT_HASH_STEP", &o.hct_hash_step_bytes));
  HCT_RETURN_IF_ERROR(boolean("HCT_PROFILE", &o.hct_profile));
  HCT_RETURN_IF_ERROR(integer("HCT_DEVICE", &o.device));
  HCT_RETURN_IF_ERROR(boolean("HCT_VERIFY", &o.verify));
  HCT_RETURN_IF_ERROR(boolean("HCT_FORCE_HOST", &o.force_host));
  if (auto v = env("HCT_O_DIRECT")) {
    std::string t = *v;
    for (auto& c : t) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (t == "auto") o.o_direct = ODirectMode::kAuto;
    else if (auto b = ParseBool(t)) o.o_direct = *b ? ODirectMode::kOn : ODirectMode::kOff;
    else return BadEnv("HCT_O_DIRECT", *v, "on, off or auto");
  }
  HCT_RETURN_IF_ERROR(o.Validate());
  return o;
}

Status RuntimeOptions::Validate() const {
  if (chunk_bytes < 4096 || chunk_bytes % 4096 != 0)
    return Status::InvalidArgument("chunk_bytes " + std::to_string(chunk_bytes) +
                                   " is not a positive multiple of 4096");
  if (staging_bytes < 2 * chunk_bytes)
    return Status::InvalidArgument("staging_bytes " + std::to_string(staging_bytes) +
                                   " must hold at least two chunks of " +
                                   std::to_string(chunk_bytes));
  if (copy_step_bytes != 0 && (copy_step_bytes < 65536 || copy_step_bytes % 4096 != 0))
    return Status::InvalidArgument("copy_step_bytes " + std::to_string(copy_step_bytes) +
                                   " must be 0 or a multiple of 4096 of at least 64K");
  if (hct_slot_bytes % 4096 != 0)
    return Status::InvalidArgument("hct_slot_bytes " + std::to_string(hct_slot_bytes) +
                                   " is not a multiple of 4096");
  if (hct_slot_bytes != 0 && hct_staging_bytes < 2 * hct_slot_bytes)
    return Status::InvalidArgument("hct_staging_bytes " + std::to_string(hct_staging_bytes) +
                                   " must hold at least two slots of " +
                                   std::to_string(hct_slot_bytes));
  if (io_threads < 1 || io_threads > 256)
    return Status::InvalidArgument("io_threads " + std::to_string(io_threads) +
                                   " is not in [1, 256]");
  if (decode_threads < 0 || decode_threads > 1024)
    return Status::InvalidArgument("decode_threads " + std::to_string(decode_threads) +
                                   " is not in [0, 1024]");
  if (streams < 1 || streams > 64)
    return Status::InvalidArgument("streams " + std::to_string(streams) + " is not in [1, 64]");
  if (hct_hash_step_bytes % 4096 != 0)
    return Status::InvalidArgument("hct_hash_step_bytes " + std::to_string(hct_hash_step_bytes) +
                                   " is not a multiple of 4096");
  if (hct_decode_streams < 0 || hct_decode_streams > 64)
    return Status::InvalidArgument("hct_decode_streams " + std::to_string(hct_decode_streams) +
                                   " is not in [0, 64]");
  return Status::OK();
}

}  // namespace hct
