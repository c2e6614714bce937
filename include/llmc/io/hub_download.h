// Downloading a model from the Hugging Face Hub into the shared cache (docs/formats.md §4),
// the way huggingface_hub does it, so that llmc and transformers find each other's files.
#pragma once

#include <string>

namespace llmc::io {

// HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set to 1/ON/YES/TRUE.
bool hub_offline();

// Fetches config.json, generation_config.json, the tokenizer files and the weights of
// `repo_id` at `revision` into the cache (HF_HUB_CACHE...), returning the snapshot directory.
// Endpoint from HF_ENDPOINT, token from HF_TOKEN or $HF_HOME/token. Errors: InputError (exit 3)
// for a missing/gated/private repo, revision or file, or content that fails its sha256;
// ResourceError (exit 4) when the endpoint cannot be reached.
std::string download_model(const std::string& repo_id, const std::string& revision, bool progress);

}  // namespace llmc::io
