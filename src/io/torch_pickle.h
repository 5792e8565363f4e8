// torch.save checkpoints of plain tensors (AdapterHub's pytorch_adapter.bin), both ways, without
// Python and without ever executing pickle code.
//
// The file is a zip archive (entries stored, not compressed) holding ARCHIVE/data.pkl — a pickle
// (protocol 2) of a dict name → tensor, each tensor written as
//   torch._utils._rebuild_tensor_v2(persistent_id(('storage', torch.FloatStorage, KEY, 'cpu', N)),
//                                    offset, size, stride, requires_grad, OrderedDict())
// — and ARCHIVE/data/KEY, the raw little-endian storage bytes. The reader interprets only the
// opcodes and the globals this structure uses (dict / OrderedDict, _rebuild_tensor_v2, the Float /
// Half / BFloat16 / Double storages) and refuses anything else (any other global, BUILD, INST,
// OBJ, ...) with an Error naming the file and what it found, so a hostile pickle can do nothing.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace peft {

// Every tensor of the checkpoint as f32 (Half / BFloat16 / Double converted), by its dict key.
std::map<std::string, Tensor> read_torch_checkpoint(const std::string& path);

// Writes f32 tensors as torch.save({name: tensor, ...}) does (archive name "archive", zip
// entries 64-byte aligned like torch's writer), atomically.
void write_torch_checkpoint(const std::string& path,
                            const std::vector<std::pair<std::string, Tensor>>& tensors);

}  // namespace peft
