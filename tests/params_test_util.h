// Codec parameters are JSON text in the API (hct/codec.h EncodedTensor::params,
// hct/container.h TensorEntry::codec_params); tests look inside them as JSON objects.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace hct::test {

// The parsed object; a test fails loudly (json::parse throws) when the text is not JSON.
inline nlohmann::json JsonOf(std::string_view params) { return nlohmann::json::parse(params); }

}  // namespace hct::test
