// Temporary forwarder (moved to tests/codec/); removed in the next commit.
#pragma once
#include "tests/codec/codec_weights.h"
