/* The one source of the shared library target libhct.so; everything else comes from the
 * hct_runtime archive, linked whole. */
const char* hct_library_name(void) { return "libhct"; }
