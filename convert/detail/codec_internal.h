// Temporary forwarder (the codec moved to codec/); removed in the next commit.
#pragma once
#include "codec/detail/codec_internal.h"
