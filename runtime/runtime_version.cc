// Component hct::runtime; see include/hct/runtime.h.
namespace hct { const char* kComponent_runtime = "runtime"; }
