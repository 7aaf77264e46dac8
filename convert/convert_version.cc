// Component hct::convert; see include/hct/convert.h.
namespace hct {
const char* kComponent_convert = "convert";
}
