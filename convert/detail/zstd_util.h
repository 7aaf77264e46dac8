// Temporary forwarder (the codec moved to codec/); removed in the next commit.
#pragma once
#include "codec/detail/zstd_util.h"
