// Component hct::kernels; see include/hct/kernels.h.
namespace hct { const char* kComponent_kernels = "kernels"; }
