// The family functions the registry rows point at (models/decoder.cpp, models/bert.cpp).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/registry.h"

namespace peft {

std::vector<TensorSpec> decoder_tensors(const HFConfig& c);
std::vector<LinearSite> decoder_linear_sites(const HFConfig& c);
std::string decoder_canonical_name(const std::string& stored, const HFConfig& c);
std::unique_ptr<Model> build_decoder(HFConfig c, const ArchSpec& arch,
                                     std::map<std::string, Tensor> tensors);

std::vector<TensorSpec> bert_tensors(const HFConfig& c);
std::vector<LinearSite> bert_linear_sites(const HFConfig& c);
std::string bert_canonical_name(const std::string& stored, const HFConfig& c);
std::unique_ptr<Model> build_bert(HFConfig c, const ArchSpec& arch,
                                  std::map<std::string, Tensor> tensors);

}  // namespace peft
