// An application built against an installed HCT through find_package(hct): it writes the demo
// model, opens it through the runtime's catalog and loads one tensor (host memory without a GPU).
#include <hct/convert.h>
#include <hct/runtime.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  if (auto st = hct::WriteDemoModel(dir, {}); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  auto cat = hct::Catalog::Open(dir);
  auto rt = hct::Runtime::Create();
  if (!cat.ok() || !rt.ok()) return 1;
  auto t = (*rt)->Load(cat->tensors().front());
  if (!t.ok() || !t->Wait().ok()) return 1;
  std::printf("consumer: loaded %s (%zu tensors)\n", cat->tensors().front().name.c_str(),
              cat->tensors().size());
  return 0;
}
