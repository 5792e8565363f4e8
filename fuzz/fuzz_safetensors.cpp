// libFuzzer: the safetensors reader (header JSON, offsets, dtypes, shapes) on arbitrary bytes;
// every tensor it accepts is read in full (and scanned for NaN as the loaders do).
#include "core/finite.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = peft::fuzz::write_input("model.safetensors", data, size);
  return peft::fuzz::run_one([&] {
    const peft::SafetensorsFile file(path);
    for (const peft::SafetensorInfo& info : file.tensors()) {
      const peft::Tensor t = file.get(info.name);
      (void)peft::count_non_finite(t);
      if (t.dtype() != peft::DType::I32 && t.numel() > 0 && t.numel() < (1 << 20))
        (void)t.to(peft::DType::F32);
    }
  });
}
