// Component hct::cache; see include/hct/cache.h.
namespace hct { const char* kComponent_cache = "cache"; }
