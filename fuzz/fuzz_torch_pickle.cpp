// libFuzzer: AdapterHub's pytorch_adapter.bin — a torch.save zip archive whose data.pkl is read
// by the restricted unpickler of io/torch_pickle.cpp (zip directory, opcodes, globals, storages,
// offsets, sizes and strides); every tensor it accepts is scanned for NaN as the loaders do.
#include "core/finite.h"
#include "fuzz_util.h"
#include "io/torch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = peft::fuzz::write_input("pytorch_adapter.bin", data, size);
  return peft::fuzz::run_one([&] {
    for (const auto& [name, tensor] : peft::read_torch_checkpoint(path))
      (void)peft::count_non_finite(tensor);
  });
}
