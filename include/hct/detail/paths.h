// Path rules shared by the tools: names read from inputs stay inside the folder they are
// joined to, and an output never overlaps its input (issue 10, items 1 and 3).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace hct::detail {

// True when `rel` is a relative path whose every component is a plain name: not empty, not
// absolute, no "." / ".." / empty components, no NUL. Joined to a folder, such a name can only
// name something inside it (as long as the folder holds no symlinks, which our staging folders
// never do). Checked on the text, never on the file system: a name read from an index or found
// by listing a folder must not depend on where symlinks point.
inline bool IsContainedRelativePath(std::string_view rel) {
  if (rel.empty() || rel.front() == '/' || rel.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string_view::npos) end = rel.size();
    const std::string_view part = rel.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

// `entry` (found by listing `dir`, so spelled as `dir` / ...) relative to `dir`, computed on the
// text: symlinks are read through later, never turned into "../../blobs/..." names. Empty when
// the result would not be a contained relative path.
inline std::string RelativeInside(const std::filesystem::path& entry,
                                  const std::filesystem::path& dir) {
  const std::string rel =
      entry.lexically_normal().lexically_relative(dir.lexically_normal()).generic_string();
  return IsContainedRelativePath(rel) ? rel : std::string();
}

// Both spellings of a path that matter for overlap: as written (made absolute, "." and ".."
// removed) and with symlinks resolved. "out", "./out" and "/abs/out" compare equal.
struct PathForms {
  std::filesystem::path lexical, resolved;
};

inline PathForms FormsOf(const std::string& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  PathForms f;
  f.lexical = fs::absolute(fs::path(p), ec).lexically_normal();
  if (ec) f.lexical = fs::path(p).lexically_normal();
  f.resolved = fs::weakly_canonical(f.lexical, ec);
  if (ec) f.resolved = f.lexical;
  return f;
}

// True when `inner` is `outer` or lies below it (whole components: "/a/bc" is not below "/a/b").
inline bool IsSameOrBelow(const std::filesystem::path& inner, const std::filesystem::path& outer) {
  std::string a = inner.string(), b = outer.string();
  while (a.size() > 1 && a.back() == '/') a.pop_back();
  while (b.size() > 1 && b.back() == '/') b.pop_back();
  if (b == "/") return true;
  return a == b || (a.size() > b.size() && a.compare(0, b.size(), b) == 0 && a[b.size()] == '/');
}

// True when writing (or, with --force, replacing) `output` could touch `input`: the two are the
// same, `output` holds `input`, or `input` is a folder that holds `output`. A single input file
// may have its output next to it. Every pairing of the written and resolved forms is compared,
// so neither the spelling nor a symlink hides an overlap.
inline bool OutputOverlapsInput(const std::string& input, const std::string& output) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool input_is_dir = fs::is_directory(input, ec);
  const PathForms in = FormsOf(input), out = FormsOf(output);
  for (const fs::path& i : {in.lexical, in.resolved})
    for (const fs::path& o : {out.lexical, out.resolved})
      if (IsSameOrBelow(i, o) || (input_is_dir && IsSameOrBelow(o, i))) return true;
  return false;
}

}  // namespace hct::detail
