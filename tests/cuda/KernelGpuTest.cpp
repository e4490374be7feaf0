//===- tests/cuda/KernelGpuTest.cpp - Every template against a reference --===//
//
// On a machine with a GPU: compiles each kernel template (through the same
// wrappers as kernel_compile_tests) for the device's architecture, runs it on
// random inputs at several sizes, awkward ones included, and compares it with
// a plain C++ reference computed in double.
//
// Outputs are poisoned first (NaN, or -1 for tokens), so an element a kernel
// forgot to write fails. Float results must agree to 1e-5, measured as
//   per element: |gpu - ref| / max(|ref|, rms(ref))   (an element near zero
//                after cancellation is judged against the vector's scale)
//   whole vector: ||gpu - ref|| / ||ref||
// Without a GPU (no libcuda, or no device) every test is skipped, saying why.
//
//===----------------------------------------------------------------------===//

#include "tests/cuda/KernelWrappers.h"

#include "codegen/kernels/add.cuh"
#include "codegen/kernels/argmax.cuh"
#include "codegen/kernels/advance.cuh"
#include "codegen/kernels/attention.cuh"
#include "codegen/kernels/embedding.cuh"
#include "codegen/kernels/kv_write.cuh"
#include "codegen/kernels/matmul.cuh"
#include "codegen/kernels/matmul_add.cuh"
#include "codegen/kernels/matmul_argmax.cuh"
#include "codegen/kernels/matmul_qkv.cuh"
#include "codegen/kernels/matmul_qkv_rope_kv.cuh"
#include "codegen/kernels/matmul_swiglu.cuh"
#include "codegen/kernels/rms_normalize.cuh"
#include "codegen/kernels/rmsnorm.cuh"
#include "codegen/kernels/rope.cuh"
#include "codegen/kernels/silu_mul.cuh"
#include "codegen/kernels/slice.cuh"
#include "runtime/cuda/CudaDriver.h"
#include "runtime/cuda/Nvrtc.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <random>

namespace llamac::test {
namespace {

using ir::DType;
using runtime::cuda::CudaDriver;
using runtime::cuda::DeviceInfo;

constexpr double kTolerance = 1e-5;
constexpr unsigned kNaNBits = 0x7fc00000u;

//===----------------------------------------------------------------------===//
// The device, shared by every test of the program.
//===----------------------------------------------------------------------===//

struct Gpu {
  const CudaDriver *driver = nullptr;
  CUdevice device = 0;
  CUcontext context = nullptr;
  DeviceInfo info;
  std::string unavailable; // why there is no GPU to test on
};

Gpu &gpu() {
  static Gpu g = [] {
    Gpu g;
    auto driver = CudaDriver::load();
    if (!driver) {
      g.unavailable = "no GPU: " + llvm::toString(driver.takeError());
      return g;
    }
    auto count = driver->deviceCount();
    if (!count || *count == 0) {
      g.unavailable = count ? "no GPU: no CUDA device" : "no GPU: " + llvm::toString(count.takeError());
      return g;
    }
    auto info = driver->deviceInfo(0);
    if (!info) {
      g.unavailable = "device 0: " + llvm::toString(info.takeError());
      return g;
    }
    if (auto err = driver->check(driver->deviceGet(&g.device, 0), "cuDeviceGet"))
      g.unavailable = llvm::toString(std::move(err));
    else if (auto err = driver->check(driver->devicePrimaryCtxRetain(&g.context, g.device),
                                      "cuDevicePrimaryCtxRetain"))
      g.unavailable = llvm::toString(std::move(err));
    if (!g.unavailable.empty())
      return g;
    g.info = std::move(*info);
    g.driver = &*driver;
    std::cout << "GPU: " << g.info.name << " (" << g.info.smArch() << ", " << g.info.multiprocessors
              << " SMs), driver CUDA " << g.driver->version() << "\n";
    return g;
  }();
  return g;
}

/// Records a failure for a CUDA error; true if there was one.
bool failed(CUresult result, llvm::StringRef what) {
  if (result == CUDA_SUCCESS)
    return false;
  ADD_FAILURE() << llvm::toString(gpu().driver->check(result, what));
  return true;
}

class DeviceBuffer {
public:
  explicit DeviceBuffer(size_t bytes) : bytes(bytes) {
    failed(gpu().driver->memAlloc(&ptr, bytes < 16 ? 16 : bytes), "cuMemAlloc");
  }
  template <typename T> explicit DeviceBuffer(const std::vector<T> &host) : DeviceBuffer(host.size() * sizeof(T)) {
    write(host);
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  ~DeviceBuffer() {
    if (ptr)
      gpu().driver->memFree(ptr);
  }

  template <typename T> void write(const std::vector<T> &host) {
    EXPECT_EQ(host.size() * sizeof(T), bytes);
    failed(gpu().driver->memcpyHtoD(ptr, host.data(), host.size() * sizeof(T)), "cuMemcpyHtoD");
  }
  template <typename T> std::vector<T> read() const {
    std::vector<T> host(bytes / sizeof(T));
    failed(gpu().driver->memcpyDtoH(host.data(), ptr, host.size() * sizeof(T)), "cuMemcpyDtoH");
    return host;
  }
  /// Fills the buffer with a 32-bit pattern: NaN for floats, -1 for tokens.
  void fill(unsigned pattern) { failed(gpu().driver->memsetD32(ptr, pattern, bytes / 4), "cuMemsetD32"); }

  CUdeviceptr ptr = 0;
  size_t bytes;
};

/// Compiled wrappers of one program, by kernel name: for the GPU's
/// architecture, or as PTX for an older one (`arch` such as "compute_80"),
/// which the driver compiles for the GPU with that architecture's code paths.
class Kernels {
public:
  explicit Kernels(std::vector<KernelWrapper> list, std::string arch = "") : wrappers(std::move(list)) {
    const Gpu &g = gpu();
    if (arch.empty())
      arch = g.info.smArch();
    auto compiled = runtime::cuda::compileCuda(programSource(wrappers), wrappers.front().name + ".cu", arch,
                                               {}, kernelHeaders());
    if (!compiled) {
      ADD_FAILURE() << llvm::toString(compiled.takeError());
      return;
    }
    EXPECT_EQ(compiled->log, "") << "NVRTC warned";
    auto module = g.driver->loadModule(compiled->image, wrappers.front().name);
    if (!module) {
      ADD_FAILURE() << llvm::toString(module.takeError());
      return;
    }
    this->module = *module;
    for (const KernelWrapper &w : wrappers) {
      CUfunction function = nullptr;
      if (!failed(g.driver->moduleGetFunction(&function, this->module, w.name.c_str()),
                  "cuModuleGetFunction(" + w.name + ")"))
        functions[w.name] = {function, w.threads};
    }
  }
  ~Kernels() {
    if (module)
      gpu().driver->moduleUnload(module);
  }

  /// Launches `wrapper` with `shape` and the given arguments, and waits.
  template <typename... Args>
  void run(const KernelWrapper &wrapper, launch::Shape shape, Args... args) {
    auto found = functions.find(wrapper.name);
    ASSERT_NE(found, functions.end()) << wrapper.name << " was not compiled";
    ASSERT_EQ(shape.blockX, found->second.threads) << wrapper.name << ": launch shape and __launch_bounds__ differ";
    void *params[] = {&args...};
    const CudaDriver &d = *gpu().driver;
    if (failed(d.launchKernel(found->second.function, shape.gridX, shape.gridY, 1, shape.blockX, 1, 1,
                              shape.dynamicSharedBytes, nullptr, params, nullptr),
               "cuLaunchKernel(" + wrapper.name + ")"))
      return;
    failed(d.ctxSynchronize(), "cuCtxSynchronize after " + wrapper.name);
  }

private:
  struct Function {
    CUfunction function;
    unsigned threads;
  };
  std::vector<KernelWrapper> wrappers;
  CUmodule module = nullptr;
  std::map<std::string, Function> functions;
};

class KernelGpuTest : public ::testing::Test {
protected:
  void SetUp() override {
    Gpu &g = gpu();
    if (!g.driver)
      GTEST_SKIP() << g.unavailable;
    ASSERT_FALSE(failed(g.driver->ctxSetCurrent(g.context), "cuCtxSetCurrent"));
  }

  std::mt19937 rng{1234};
};

//===----------------------------------------------------------------------===//
// Host data: random values, weights in each dtype, comparisons.
//===----------------------------------------------------------------------===//

std::vector<float> randomVector(std::mt19937 &rng, size_t n, float low = -1.0f, float high = 1.0f) {
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  uint32_t magnitude = x & 0x7fffffffu;
  if (magnitude < 0x38800000u) // below 2^-14: a subnormal half, in steps of 2^-24
    return uint16_t(sign | uint16_t(std::nearbyint(std::fabs(f) * 16777216.0f)));
  uint32_t half = ((((magnitude >> 23) - 127 + 15) << 10) | ((magnitude & 0x7fffffu) >> 13));
  uint32_t rest = magnitude & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
    ++half; // round to nearest even; a carry into the exponent is still right
  return uint16_t(sign | half);
}

float halfToFloat(uint16_t h) {
  float sign = (h & 0x8000u) ? -1.0f : 1.0f;
  int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent == 0)
    return sign * std::ldexp(float(mantissa), -24);
  return sign * std::ldexp(float(1024 + mantissa), exponent - 25);
}

uint16_t floatToBfloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float bfloat16ToFloat(uint16_t b) {
  uint32_t x = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

/// A weight tensor: its bytes in `dtype`, and the values those bytes hold.
struct Weights {
  std::vector<float> values;
  std::vector<uint8_t> bytes;
};

/// The floats that `bytes` of `dtype` hold (a KV cache read back).
std::vector<float> decode(const std::vector<uint8_t> &bytes, DType dtype) {
  if (dtype == DType::f32) {
    std::vector<float> values(bytes.size() / 4);
    std::memcpy(values.data(), bytes.data(), bytes.size());
    return values;
  }
  std::vector<uint16_t> bits(bytes.size() / 2);
  std::memcpy(bits.data(), bytes.data(), bytes.size());
  std::vector<float> values(bits.size());
  for (size_t i = 0; i < bits.size(); ++i)
    values[i] = dtype == DType::f16 ? halfToFloat(bits[i]) : bfloat16ToFloat(bits[i]);
  return values;
}

/// Relative error of one rounding to `dtype` (0 for f32), the tolerance of a
/// value the kernel computes in f32 and stores as dtype.
double roundingError(DType dtype) { return dtype == DType::f16 ? 1e-3 : dtype == DType::bf16 ? 8e-3 : 0.0; }

Weights encode(const std::vector<float> &values, DType dtype) {
  Weights w;
  w.values.resize(values.size());
  if (dtype == DType::f32) {
    w.values = values;
    w.bytes.resize(values.size() * 4);
    std::memcpy(w.bytes.data(), values.data(), w.bytes.size());
    return w;
  }
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    bits[i] = dtype == DType::f16 ? floatToHalf(values[i]) : floatToBfloat16(values[i]);
    w.values[i] = dtype == DType::f16 ? halfToFloat(bits[i]) : bfloat16ToFloat(bits[i]);
  }
  w.bytes.resize(bits.size() * 2);
  std::memcpy(w.bytes.data(), bits.data(), w.bytes.size());
  return w;
}

Weights randomWeights(std::mt19937 &rng, size_t n, DType dtype) { return encode(randomVector(rng, n), dtype); }

/// The RMSNorm scale in double.
double rmsScale(const std::vector<float> &x, size_t n) {
  double ss = 0;
  for (size_t i = 0; i < n; ++i)
    ss += double(x[i]) * x[i];
  return 1.0 / std::sqrt(ss / double(n) + kTestEps);
}

/// y[n] = sum_k x[k] * scale * W[n][k], in double.
std::vector<double> referenceMatmul(const std::vector<float> &x, const std::vector<float> &w, int n, int k,
                                    double scale) {
  std::vector<double> y(n);
  for (int row = 0; row < n; ++row) {
    double sum = 0;
    for (int i = 0; i < k; ++i)
      sum += double(x[i]) * scale * w[size_t(row) * k + i];
    y[row] = sum;
  }
  return y;
}

double silu(double a) { return a / (1.0 + std::exp(-a)); }

/// Rotates (x0, x1) at offset j of a head: the angle exactly as llama2.c
/// computes it in float, the rotation in double.
void referenceRope(int j, int headSize, int pos, double &x0, double &x1) {
  float freq = 1.0f / powf(kTestTheta, float(j) / float(headSize));
  float angle = float(pos) * freq;
  double c = std::cos(double(angle)), s = std::sin(double(angle));
  double r0 = x0 * c - x1 * s, r1 = x0 * s + x1 * c;
  x0 = r0;
  x1 = r1;
}

/// Checks a float result against the double reference (see the file comment).
void expectClose(const std::vector<float> &actual, const std::vector<double> &expected, const std::string &what,
                 double tolerance = kTolerance) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double sumSquares = 0;
  for (double e : expected)
    sumSquares += e * e;
  double rms = std::sqrt(sumSquares / double(expected.size()));
  double floor = rms > 0 ? rms : std::numeric_limits<double>::min();
  double worst = 0, diffSquares = 0;
  size_t worstAt = 0, bad = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i])) {
      if (bad++ < 5)
        ADD_FAILURE() << what << ": element " << i << " is " << actual[i]
                      << " (NaN: never written), expected " << expected[i];
      continue;
    }
    double diff = std::fabs(double(actual[i]) - expected[i]);
    diffSquares += diff * diff;
    double relative = diff / std::max(std::fabs(expected[i]), floor);
    if (relative > worst) {
      worst = relative;
      worstAt = i;
    }
  }
  if (bad)
    return;
  double normRelative = sumSquares > 0 ? std::sqrt(diffSquares / sumSquares) : std::sqrt(diffSquares);
  EXPECT_LE(worst, tolerance) << what << ": element " << worstAt << " is " << actual[worstAt] << ", expected "
                              << expected[worstAt];
  EXPECT_LE(normRelative, tolerance) << what;
  std::cout << "  " << what << ": max rel " << worst << ", norm rel " << normRelative << "\n";
}

std::vector<double> toDouble(const std::vector<float> &v) { return std::vector<double>(v.begin(), v.end()); }

const DType kWeightTypes[] = {DType::f32, DType::f16, DType::bf16};

//===----------------------------------------------------------------------===//
// The tests, one per template.
//===----------------------------------------------------------------------===//

TEST_F(KernelGpuTest, Embedding) {
  const int vocab = 50, token = 37;
  for (int d : {257, 64}) {
    std::vector<KernelWrapper> wrappers;
    for (DType t : kWeightTypes)
      wrappers.push_back(embeddingKernel(d, t));
    Kernels kernels(wrappers);
    for (size_t i = 0; i < wrappers.size(); ++i) {
      Weights table = randomWeights(rng, size_t(vocab) * d, kWeightTypes[i]);
      DeviceBuffer tableBuffer(table.bytes), tokenBuffer(std::vector<int>{token}), y(d * 4);
      y.fill(kNaNBits);
      kernels.run(wrappers[i], launch::embedding(d), tableBuffer.ptr, tokenBuffer.ptr, y.ptr);
      std::vector<double> expected(table.values.begin() + size_t(token) * d,
                                   table.values.begin() + size_t(token + 1) * d);
      expectClose(y.read<float>(), expected, wrappers[i].name, 0.0);
    }
  }
}

TEST_F(KernelGpuTest, RmsNorm) {
  for (int d : {7, 768, 4097}) {
    std::vector<KernelWrapper> wrappers;
    for (DType t : kWeightTypes)
      wrappers.push_back(rmsnormKernel(d, t));
    wrappers.push_back(rmsNormalizeKernel(d));
    Kernels kernels(wrappers);
    std::vector<float> x = randomVector(rng, d);
    double scale = rmsScale(x, d);
    for (size_t i = 0; i < 3; ++i) {
      Weights g = randomWeights(rng, d, kWeightTypes[i]);
      DeviceBuffer xBuffer(x), gBuffer(g.bytes), y(d * 4);
      y.fill(kNaNBits);
      kernels.run(wrappers[i], launch::rmsnorm(), xBuffer.ptr, gBuffer.ptr, y.ptr);
      std::vector<double> expected(d);
      for (int j = 0; j < d; ++j)
        expected[j] = double(g.values[j]) * scale * x[j];
      expectClose(y.read<float>(), expected, wrappers[i].name);
    }
    // In place: y aliases x.
    DeviceBuffer xy(x);
    kernels.run(wrappers[3], launch::rmsNormalize(), xy.ptr, xy.ptr);
    std::vector<double> expected(d);
    for (int j = 0; j < d; ++j)
      expected[j] = scale * x[j];
    expectClose(xy.read<float>(), expected, wrappers[3].name + " (in place)");
  }
}

struct MatmulSize {
  int n, k;
  bool rms;
};

// K = 250: the scalar path for every type. K = 264: the vector path, with a
// partial last step. K = 8: fewer elements than lanes. N never a multiple of 8
// except 64, whose K is the awkward one.
const MatmulSize kMatmulSizes[] = {{257, 250, true}, {64, 264, false}, {300, 2048, true}, {5, 8, false},
                                   {64, 86, false}};

/// A matmul launch and the same work on at most 3 blocks, which loop over it
/// (Shape::gridStride: the runtime launches fewer blocks than the grid).
std::vector<launch::Shape> fullAndFewBlocks(launch::Shape full) {
  EXPECT_TRUE(full.gridStride);
  launch::Shape few = full;
  few.gridX = std::min(full.gridX, 3u);
  return {full, few};
}

/// " (3 blocks)" for the second shape of fullAndFewBlocks.
std::string blocksTag(const launch::Shape &shape, const launch::Shape &full) {
  return shape.gridX == full.gridX ? "" : " (" + std::to_string(shape.gridX) + " blocks)";
}

/// The splits (warps per row) a matmul test runs: the code generator's pick
/// for the shape, and `other`.
std::vector<int> splitsFor(int n, int k, DType t, int rowsPerTask, int other) {
  int chosen = defaultSplit(n, k, t, rowsPerTask);
  return chosen == other ? std::vector<int>{chosen} : std::vector<int>{chosen, other};
}

TEST_F(KernelGpuTest, Matmul) {
  const int splits[] = {1, 2, 4, 8};
  std::vector<KernelWrapper> wrappers;
  for (const MatmulSize &s : kMatmulSizes)
    for (DType t : kWeightTypes)
      for (int split : splits)
        wrappers.push_back(matmulKernel(s.n, s.k, t, s.rms, split));
  Kernels kernels(wrappers);
  size_t next = 0;
  for (const MatmulSize &s : kMatmulSizes) {
    std::vector<float> x = randomVector(rng, s.k);
    for (DType t : kWeightTypes) {
      Weights w = randomWeights(rng, size_t(s.n) * s.k, t);
      std::vector<double> expected = referenceMatmul(x, w.values, s.n, s.k, s.rms ? rmsScale(x, s.k) : 1.0);
      for (int split : splits) {
        const KernelWrapper &wrapper = wrappers[next++];
        DeviceBuffer xBuffer(x), wBuffer(w.bytes), y(s.n * 4);
        for (launch::Shape shape : fullAndFewBlocks(launch::matmul(s.n, split))) {
          y.fill(kNaNBits);
          kernels.run(wrapper, shape, xBuffer.ptr, wBuffer.ptr, y.ptr);
          expectClose(y.read<float>(), expected, wrapper.name + blocksTag(shape, launch::matmul(s.n, split)));
        }
      }
    }
  }
}

TEST_F(KernelGpuTest, MatmulAdd) {
  const MatmulSize sizes[] = {{257, 250, false}, {768, 768, true}, {300, 2048, false}};
  std::vector<KernelWrapper> wrappers;
  for (const MatmulSize &s : sizes)
    for (DType t : kWeightTypes)
      for (int split : splitsFor(s.n, s.k, t, 1, 8))
        wrappers.push_back(matmulAddKernel(s.n, s.k, t, s.rms, split));
  Kernels kernels(wrappers);
  size_t next = 0;
  for (const MatmulSize &s : sizes) {
    std::vector<float> x = randomVector(rng, s.k);
    for (DType t : kWeightTypes)
      for (int split : splitsFor(s.n, s.k, t, 1, 8)) {
        const KernelWrapper &wrapper = wrappers[next++];
        std::vector<float> r = randomVector(rng, s.n);
        Weights w = randomWeights(rng, size_t(s.n) * s.k, t);
        std::vector<double> expected = referenceMatmul(x, w.values, s.n, s.k, s.rms ? rmsScale(x, s.k) : 1.0);
        for (int i = 0; i < s.n; ++i)
          expected[i] += r[i];
        DeviceBuffer xBuffer(x), wBuffer(w.bytes), rBuffer(r), y(s.n * 4);
        for (launch::Shape shape : fullAndFewBlocks(launch::matmulAdd(s.n, split))) {
          y.fill(kNaNBits);
          kernels.run(wrapper, shape, xBuffer.ptr, wBuffer.ptr, rBuffer.ptr, y.ptr);
          expectClose(y.read<float>(), expected, wrapper.name + blocksTag(shape, launch::matmulAdd(s.n, split)));
        }
        // The residual update in place: y aliases r.
        kernels.run(wrapper, launch::matmulAdd(s.n, split), xBuffer.ptr, wBuffer.ptr, rBuffer.ptr, rBuffer.ptr);
        expectClose(rBuffer.read<float>(), expected, wrapper.name + " (in place)");
      }
  }
}

TEST_F(KernelGpuTest, MatmulSwiglu) {
  const MatmulSize sizes[] = {{257, 250, true}, {100, 264, false}, {77, 4096, true}, {86, 64, true}};
  std::vector<KernelWrapper> wrappers;
  for (const MatmulSize &s : sizes)
    for (DType t : kWeightTypes)
      for (int split : splitsFor(2 * s.n, s.k, t, 2, 2))
        wrappers.push_back(matmulSwigluKernel(s.n, s.k, t, s.rms, split));
  Kernels kernels(wrappers);
  size_t next = 0;
  for (const MatmulSize &s : sizes) {
    std::vector<float> x = randomVector(rng, s.k);
    double scale = s.rms ? rmsScale(x, s.k) : 1.0;
    for (DType t : kWeightTypes)
      for (int split : splitsFor(2 * s.n, s.k, t, 2, 2)) {
        const KernelWrapper &wrapper = wrappers[next++];
        Weights w1 = randomWeights(rng, size_t(s.n) * s.k, t), w3 = randomWeights(rng, size_t(s.n) * s.k, t);
        std::vector<double> a = referenceMatmul(x, w1.values, s.n, s.k, scale);
        std::vector<double> b = referenceMatmul(x, w3.values, s.n, s.k, scale);
        std::vector<double> expected(s.n);
        for (int i = 0; i < s.n; ++i)
          expected[i] = silu(a[i]) * b[i];
        DeviceBuffer xBuffer(x), w1Buffer(w1.bytes), w3Buffer(w3.bytes), y(s.n * 4);
        for (launch::Shape shape : fullAndFewBlocks(launch::matmulSwiglu(s.n, split))) {
          y.fill(kNaNBits);
          kernels.run(wrapper, shape, xBuffer.ptr, w1Buffer.ptr, w3Buffer.ptr, y.ptr);
          expectClose(y.read<float>(), expected, wrapper.name + blocksTag(shape, launch::matmulSwiglu(s.n, split)));
        }
      }
  }
}

TEST_F(KernelGpuTest, MatmulQkv) {
  struct Size {
    int nq, nk, nv, k;
    bool rms;
  };
  const Size sizes[] = {{64, 16, 16, 250, true}, {96, 32, 32, 264, false}, {10, 3, 5, 8, true}};
  std::vector<KernelWrapper> wrappers;
  for (const Size &s : sizes)
    for (DType t : kWeightTypes)
      for (int split : splitsFor(s.nq + s.nk + s.nv, s.k, t, 1, 4))
        wrappers.push_back(matmulQkvKernel(s.nq, s.nk, s.nv, s.k, t, s.rms, split));
  Kernels kernels(wrappers);
  size_t next = 0;
  for (const Size &s : sizes) {
    std::vector<float> x = randomVector(rng, s.k);
    double scale = s.rms ? rmsScale(x, s.k) : 1.0;
    for (DType t : kWeightTypes)
      for (int split : splitsFor(s.nq + s.nk + s.nv, s.k, t, 1, 4)) {
        const KernelWrapper &wrapper = wrappers[next++];
        Weights wq = randomWeights(rng, size_t(s.nq) * s.k, t), wk = randomWeights(rng, size_t(s.nk) * s.k, t),
                wv = randomWeights(rng, size_t(s.nv) * s.k, t);
        std::vector<double> expected = referenceMatmul(x, wq.values, s.nq, s.k, scale);
        for (double v : referenceMatmul(x, wk.values, s.nk, s.k, scale))
          expected.push_back(v);
        for (double v : referenceMatmul(x, wv.values, s.nv, s.k, scale))
          expected.push_back(v);
        int total = s.nq + s.nk + s.nv;
        DeviceBuffer xBuffer(x), wqBuffer(wq.bytes), wkBuffer(wk.bytes), wvBuffer(wv.bytes), y(total * 4);
        for (launch::Shape shape : fullAndFewBlocks(launch::matmulQkv(total, split))) {
          y.fill(kNaNBits);
          kernels.run(wrapper, shape, xBuffer.ptr, wqBuffer.ptr, wkBuffer.ptr, wvBuffer.ptr, y.ptr);
          expectClose(y.read<float>(), expected, wrapper.name + blocksTag(shape, launch::matmulQkv(total, split)));
        }
      }
  }
}

TEST_F(KernelGpuTest, MatmulQkvRopeKv) {
  struct Size {
    int nq, nk, k, headSize, seqLen, pos;
    bool rms;
    DType type, kv; // weights, KV cache
  };
  const Size sizes[] = {
      {96, 32, 250, 8, 7, 5, true, DType::f32, DType::f32},
      {96, 32, 250, 8, 7, 0, true, DType::bf16, DType::bf16},
      {256, 128, 264, 64, 512, 511, false, DType::f16, DType::f16},
      {256, 128, 264, 64, 512, 300, false, DType::f32, DType::f32},
      {256, 128, 256, 128, 8192, 8191, true, DType::bf16, DType::f32},
      {256, 128, 256, 128, 8192, 4000, true, DType::f32, DType::f16},
  };
  for (const Size &s : sizes)
    for (int split : splitsFor(s.nq + 2 * s.nk, s.k, s.type, 2, 2)) {
      KernelWrapper wrapper =
          codegen::matmulQkvRopeKvKernel(s.nq, s.nk, s.k, s.headSize, s.type, s.rms, kTestEps, kTestTheta, split, s.kv);
      Kernels kernels({wrapper});
      std::vector<float> x = randomVector(rng, s.k);
      double scale = s.rms ? rmsScale(x, s.k) : 1.0;
      Weights wq = randomWeights(rng, size_t(s.nq) * s.k, s.type), wk = randomWeights(rng, size_t(s.nk) * s.k, s.type),
              wv = randomWeights(rng, size_t(s.nk) * s.k, s.type);
      std::vector<double> q = referenceMatmul(x, wq.values, s.nq, s.k, scale);
      std::vector<double> k = referenceMatmul(x, wk.values, s.nk, s.k, scale);
      std::vector<double> v = referenceMatmul(x, wv.values, s.nk, s.k, scale);
      for (int i = 0; i < s.nq; i += 2)
        referenceRope(i % s.headSize, s.headSize, s.pos, q[i], q[i + 1]);
      for (int i = 0; i < s.nk; i += 2)
        referenceRope(i % s.headSize, s.headSize, s.pos, k[i], k[i + 1]);

      // The caches hold earlier positions that must survive untouched.
      Weights kInitial = encode(randomVector(rng, size_t(s.seqLen) * s.nk), s.kv);
      Weights vInitial = encode(randomVector(rng, size_t(s.seqLen) * s.nk), s.kv);
      const launch::Shape full = launch::matmulQkvRopeKv(s.nq, s.nk, split);
      for (launch::Shape shape : fullAndFewBlocks(full)) {
        DeviceBuffer xBuffer(x), wqBuffer(wq.bytes), wkBuffer(wk.bytes), wvBuffer(wv.bytes),
            posBuffer(std::vector<int>{s.pos}), kcache(kInitial.bytes), vcache(vInitial.bytes), y(s.nq * 4);
        y.fill(kNaNBits);
        kernels.run(wrapper, shape, xBuffer.ptr, wqBuffer.ptr, wkBuffer.ptr, wvBuffer.ptr, posBuffer.ptr, kcache.ptr,
                    vcache.ptr, y.ptr);
        std::string what = wrapper.name + " at pos " + std::to_string(s.pos) + blocksTag(shape, full);
        expectClose(y.read<float>(), q, what + " q");

        std::vector<float> kAfter = decode(kcache.read<uint8_t>(), s.kv);
        std::vector<float> vAfter = decode(vcache.read<uint8_t>(), s.kv);
        size_t row = size_t(s.pos) * s.nk;
        double tolerance = std::max(kTolerance, roundingError(s.kv));
        expectClose(std::vector<float>(kAfter.begin() + row, kAfter.begin() + row + s.nk), k, what + " k", tolerance);
        expectClose(std::vector<float>(vAfter.begin() + row, vAfter.begin() + row + s.nk), v, what + " v", tolerance);
        for (size_t i = 0; i < kAfter.size(); ++i)
          if (i < row || i >= row + s.nk) {
            ASSERT_EQ(kAfter[i], kInitial.values[i]) << what << ": kcache[" << i << "] changed";
            ASSERT_EQ(vAfter[i], vInitial.values[i]) << what << ": vcache[" << i << "] changed";
          }
      }
    }
}

TEST_F(KernelGpuTest, MatmulArgmax) {
  struct Size {
    int n, k;
    bool rms;
    DType type;
  };
  // 32000 rows of one load per lane: the grid is capped at kMatmulArgmaxMaxBlocks
  // blocks, and each warp takes two rows in turn.
  const Size sizes[] = {{257, 250, true, DType::f32}, {32000, 64, false, DType::f16}, {4099, 264, true, DType::bf16}};
  for (const Size &s : sizes)
    for (int split : splitsFor(s.n, s.k, s.type, 1, 4)) {
      const unsigned partials = launch::matmulArgmaxPartials(s.n, s.k, ir::byteSize(s.type), split);
      KernelWrapper stage1 = matmulArgmaxKernel(s.n, s.k, s.type, s.rms, split);
      KernelWrapper stage2 = argmaxKeysKernel(int(partials), launch::kArgmaxThreads);
      Kernels kernels({stage1, stage2});
      std::vector<float> x = randomVector(rng, s.k);
      // A planted best row (its signs follow x), and a copy of it further on:
      // the copy ties exactly, and the lower index must win. Once with the two
      // rows in different blocks, once in the same block, and where the grid
      // is capped once in the same warp (its next row, a grid's tasks later).
      std::vector<int> gaps = {50, 1};
      const int taskStride = int(partials) * launch::kGemvWarps / split;
      if (s.n / 3 + taskStride < s.n)
        gaps.push_back(taskStride);
      for (int gap : gaps) {
        std::vector<float> values = randomVector(rng, size_t(s.n) * s.k);
        int best = s.n / 3, copy = best + gap;
        for (int i = 0; i < s.k; ++i) {
          float magnitude = std::fabs(values[size_t(best) * s.k + i]);
          values[size_t(best) * s.k + i] = std::copysign(magnitude, x[i]);
          values[size_t(copy) * s.k + i] = values[size_t(best) * s.k + i];
        }
        Weights w = encode(values, s.type);
        std::vector<double> logits = referenceMatmul(x, w.values, s.n, s.k, s.rms ? rmsScale(x, s.k) : 1.0);
        int expected = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
        ASSERT_EQ(expected, best) << "the planted row must win in the reference";

        DeviceBuffer xBuffer(x), wBuffer(w.bytes), keys(partials * 8), token(4);
        keys.fill(kNaNBits);
        token.fill(0xffffffffu);
        kernels.run(stage1, launch::matmulArgmax(s.n, s.k, ir::byteSize(s.type), split), xBuffer.ptr, wBuffer.ptr,
                    keys.ptr);
        kernels.run(stage2, launch::argmaxKeys(launch::kArgmaxThreads), keys.ptr, token.ptr);
        EXPECT_EQ(token.read<int>()[0], expected) << stage1.name << ", tie " << gap << " rows apart";
      }
    }
}

// greedy_chain_step's last two kernels (advance.cuh's form 2): the classifier
// advances pos, then the token goes to the history and the token slot, and
// its row of the table (here the classifier's own, as in a shared
// classifier) becomes the next step's x.
TEST_F(KernelGpuTest, ChainedClassifier) {
  struct Size {
    int n, k;
    DType type;
  };
  // The last: more rows than the capped grid (kMatmulArgmaxMaxBlocks blocks)
  // has warps, so each warp takes rows in turn.
  const Size sizes[] = {{257, 250, DType::f32}, {4099, 264, DType::bf16}, {20011, 72, DType::f16}};
  for (const Size &s : sizes) {
    const int split = defaultSplit(s.n, s.k, s.type, 1);
    const unsigned partials = launch::matmulArgmaxPartials(s.n, s.k, ir::byteSize(s.type), split);
    KernelWrapper stage1 = matmulArgmaxKernel(s.n, s.k, s.type, true, split, /*advancesPosition=*/true);
    KernelWrapper stage2 = argmaxKeysChainedKernel(int(partials), s.k, s.type);
    Kernels kernels({stage1, stage2});
    std::vector<float> x = randomVector(rng, s.k), values = randomVector(rng, size_t(s.n) * s.k);
    const int best = s.n / 3 + 1; // planted, as in MatmulArgmax, so rounding cannot move it
    for (int i = 0; i < s.k; ++i)
      values[size_t(best) * s.k + i] = std::copysign(std::fabs(values[size_t(best) * s.k + i]), x[i]);
    Weights w = encode(values, s.type);
    std::vector<double> logits = referenceMatmul(x, w.values, s.n, s.k, rmsScale(x, s.k));
    int expected = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
    ASSERT_EQ(expected, best);

    // history[0] is the chain's first position (5); pos 7 is its third step.
    DeviceBuffer xBuffer(x), wBuffer(w.bytes), keys(partials * 8), pos(std::vector<int>{7}), token(std::vector<int>{3}),
        history(std::vector<int>{5, -1, -1, -1, -1}), next(s.k * 4);
    keys.fill(kNaNBits);
    next.fill(kNaNBits);
    kernels.run(stage1, launch::matmulArgmax(s.n, s.k, ir::byteSize(s.type), split), xBuffer.ptr, wBuffer.ptr,
                keys.ptr, pos.ptr);
    EXPECT_EQ(pos.read<int>()[0], 8) << stage1.name;
    kernels.run(stage2, launch::argmaxKeys(launch::kArgmaxThreads), keys.ptr, pos.ptr, history.ptr, token.ptr,
                wBuffer.ptr, next.ptr);
    EXPECT_EQ(token.read<int>()[0], expected) << stage2.name;
    EXPECT_EQ(pos.read<int>()[0], 8) << stage2.name;
    EXPECT_EQ(history.read<int>(), (std::vector<int>{5, -1, -1, expected, -1})) << stage2.name;
    std::vector<float> row(w.values.begin() + size_t(expected) * s.k, w.values.begin() + size_t(expected + 1) * s.k);
    EXPECT_EQ(next.read<float>(), row) << stage2.name << ": the next step's x is the token's row";
  }
}

TEST_F(KernelGpuTest, Rope) {
  struct Size {
    int n, headSize;
  };
  const Size sizes[] = {{96, 16}, {256, 128}, {64, 8}, {128, 64}};
  std::vector<KernelWrapper> wrappers;
  for (const Size &s : sizes)
    wrappers.push_back(ropeKernel(s.n, s.headSize));
  Kernels kernels(wrappers);
  for (size_t i = 0; i < wrappers.size(); ++i) {
    const Size &s = sizes[i];
    for (int pos : {0, 1, 511, 8191}) {
      std::vector<float> x = randomVector(rng, s.n);
      std::vector<double> expected = toDouble(x);
      for (int j = 0; j < s.n; j += 2)
        referenceRope(j % s.headSize, s.headSize, pos, expected[j], expected[j + 1]);
      DeviceBuffer xBuffer(x), posBuffer(std::vector<int>{pos}), y(s.n * 4);
      y.fill(kNaNBits);
      kernels.run(wrappers[i], launch::rope(s.n), xBuffer.ptr, posBuffer.ptr, y.ptr);
      std::string what = wrappers[i].name + " at pos " + std::to_string(pos);
      expectClose(y.read<float>(), expected, what);
      kernels.run(wrappers[i], launch::rope(s.n), xBuffer.ptr, posBuffer.ptr, xBuffer.ptr);
      expectClose(xBuffer.read<float>(), expected, what + " (in place)");
    }
  }
}

TEST_F(KernelGpuTest, KvWrite) {
  const int nk = 250, seqLen = 7, pos = 5;
  for (DType kv : kWeightTypes) {
    KernelWrapper wrapper = kvWriteKernel(nk, kv);
    Kernels kernels({wrapper});
    std::vector<float> k = randomVector(rng, nk), v = randomVector(rng, nk);
    Weights kInitial = encode(randomVector(rng, size_t(seqLen) * nk), kv);
    Weights vInitial = encode(randomVector(rng, size_t(seqLen) * nk), kv);
    DeviceBuffer kBuffer(k), vBuffer(v), posBuffer(std::vector<int>{pos}), kcache(kInitial.bytes),
        vcache(vInitial.bytes);
    kernels.run(wrapper, launch::kvWrite(nk), kBuffer.ptr, vBuffer.ptr, posBuffer.ptr, kcache.ptr, vcache.ptr);
    // Stored exactly as the CPU executor rounds them (runtime/Half.h).
    std::vector<float> kExpected = kInitial.values, vExpected = vInitial.values;
    std::vector<float> kRounded = encode(k, kv).values, vRounded = encode(v, kv).values;
    std::copy(kRounded.begin(), kRounded.end(), kExpected.begin() + pos * nk);
    std::copy(vRounded.begin(), vRounded.end(), vExpected.begin() + pos * nk);
    EXPECT_EQ(decode(kcache.read<uint8_t>(), kv), kExpected) << wrapper.name;
    EXPECT_EQ(decode(vcache.read<uint8_t>(), kv), vExpected) << wrapper.name;
  }
}

TEST_F(KernelGpuTest, Attention) {
  struct Size {
    int heads, kvHeads, headSize, seqLen, pos;
    DType kv = DType::f32;
  };
  const Size sizes[] = {
      {4, 2, 8, 7, 6},     {6, 6, 16, 1, 0},       {8, 2, 64, 512, 300},
      {2, 2, 6, 7, 3},     {4, 1, 128, 8192, 8191}, {4, 4, 128, 8192, 255},
      {4, 2, 64, 512, 128}, // the first position of a second chunk
      {4, 2, 64, 512, 256}, // and of a third
      {8, 2, 64, 1024, 700, DType::f16}, {2, 2, 6, 7, 3, DType::f16}, {4, 1, 128, 2048, 1500, DType::bf16},
      // Spans whose later blocks (of 2, 4 or 8) have no positions yet, or
      // some: a cluster merges only the blocks that have.
      {12, 12, 64, 1024, 0}, {4, 2, 64, 512, 20}, {4, 2, 64, 512, 47}, {12, 12, 64, 1024, 150, DType::f16},
      {4, 2, 64, 512, 127}, {3, 1, 12, 300, 299}, {4, 2, 64, 1024, 1023}, {4, 2, 64, 1024, 513},
      {4, 2, 64, 1024, 5, DType::bf16},
      // The first position of a later span (one block of its cluster filled)
      // for 4 and 8 parts; a partial second span; row by row over spans.
      {4, 2, 64, 1024, 512}, {2, 1, 64, 2048, 1024}, {4, 2, 64, 1100, 1099}, {2, 2, 6, 600, 300},
  };
  for (const Size &s : sizes) {
    KernelWrapper single = attentionKernel(s.heads, s.kvHeads, s.headSize, s.seqLen, s.kv);
    // A span over 1, 2, 4 and 8 blocks: clusters that merge in shared
    // memory on sm_90, blocks that merge over global memory before it.
    const unsigned partsOf[] = {1, 2, 4, 8};
    std::vector<KernelWrapper> splits;
    for (unsigned parts : partsOf)
      splits.push_back(attentionSplitKernel(s.heads, s.kvHeads, s.headSize, s.seqLen, s.kv, int(parts)));
    std::vector<KernelWrapper> all = splits;
    all.push_back(single);
    Kernels kernels(all);
    Kernels before90(splits, "compute_80"); // the same blocks without clusters

    const int kvDim = s.kvHeads * s.headSize, qDim = s.heads * s.headSize;
    std::vector<float> q = randomVector(rng, qDim);
    // Positions after pos hold NaN: reading them would poison the output.
    std::vector<float> kcache = randomVector(rng, size_t(s.seqLen) * kvDim);
    std::vector<float> vcache = randomVector(rng, size_t(s.seqLen) * kvDim);
    for (size_t i = size_t(s.pos + 1) * kvDim; i < kcache.size(); ++i)
      kcache[i] = vcache[i] = std::numeric_limits<float>::quiet_NaN();
    // The reference reads exactly the values the cache dtype holds.
    Weights kStored = encode(kcache, s.kv), vStored = encode(vcache, s.kv);
    kcache = kStored.values;
    vcache = vStored.values;

    std::vector<double> expected(qDim);
    for (int h = 0; h < s.heads; ++h) {
      int kvOffset = (h / (s.heads / s.kvHeads)) * s.headSize;
      std::vector<double> scores(s.pos + 1);
      for (int t = 0; t <= s.pos; ++t) {
        double dot = 0;
        for (int d = 0; d < s.headSize; ++d)
          dot += double(q[h * s.headSize + d]) * kcache[size_t(t) * kvDim + kvOffset + d];
        scores[t] = dot / std::sqrt(double(s.headSize));
      }
      double maxScore = *std::max_element(scores.begin(), scores.end()), sum = 0;
      for (double &score : scores)
        sum += (score = std::exp(score - maxScore));
      for (int d = 0; d < s.headSize; ++d) {
        double acc = 0;
        for (int t = 0; t <= s.pos; ++t)
          acc += scores[t] / sum * vcache[size_t(t) * kvDim + kvOffset + d];
        expected[h * s.headSize + d] = acc;
      }
    }

    DeviceBuffer qBuffer(q), posBuffer(std::vector<int>{s.pos}), kBuffer(kStored.bytes), vBuffer(vStored.bytes),
        out(qDim * 4),
        partials(launch::attentionPartialFloats(s.heads, s.headSize, s.seqLen, launch::kAttentionMaxParts) * 4);
    std::string what = single.name + " at pos " + std::to_string(s.pos);
    out.fill(kNaNBits);
    kernels.run(single, launch::attention(s.heads), qBuffer.ptr, posBuffer.ptr, kBuffer.ptr, vBuffer.ptr, out.ptr);
    expectClose(out.read<float>(), expected, what);

    // Twice: the last block of each head merges the units (spans, or
    // blocks) and must leave its counter at zero for the next launch.
    for (Kernels *compiled : {&kernels, &before90}) {
      for (size_t i = 0; i < splits.size(); ++i) {
        const unsigned parts = partsOf[i];
        std::string name = splits[i].name + (compiled == &before90 ? " (compute_80)" : "");
        DeviceBuffer counters(std::vector<unsigned>(launch::attentionCounters(s.heads), 0u));
        for (int launchIndex = 0; launchIndex < 2; ++launchIndex) {
          out.fill(kNaNBits);
          partials.fill(kNaNBits); // slots past pos stay NaN and must not be read
          compiled->run(splits[i], launch::attentionSplit(s.heads, s.seqLen, parts), qBuffer.ptr, posBuffer.ptr,
                        kBuffer.ptr, vBuffer.ptr, partials.ptr, counters.ptr, out.ptr);
          expectClose(out.read<float>(), expected,
                      name + " at pos " + std::to_string(s.pos) + ", launch " + std::to_string(launchIndex + 1));
          EXPECT_EQ(counters.read<unsigned>(), std::vector<unsigned>(launch::attentionCounters(s.heads), 0u)) << name;
        }
      }
    }
  }
}

TEST_F(KernelGpuTest, AdvanceGreedy) {
  KernelWrapper wrapper = advanceGreedyKernel();
  Kernels kernels({wrapper});
  // history[0] is the chain's first position (5); pos 7 is its third step.
  DeviceBuffer produced(std::vector<int>{42}), token(std::vector<int>{3}), pos(std::vector<int>{7}),
      history(std::vector<int>{5, -1, -1, -1, -1});
  kernels.run(wrapper, launch::advance(), produced.ptr, token.ptr, pos.ptr, history.ptr);
  EXPECT_EQ(token.read<int>()[0], 42);
  EXPECT_EQ(pos.read<int>()[0], 8);
  EXPECT_EQ(history.read<int>(), (std::vector<int>{5, -1, -1, 42, -1}));
}

TEST_F(KernelGpuTest, Elementwise) {
  const int n = 257, offset = 3, size = 250;
  std::vector<KernelWrapper> wrappers = {siluMulKernel(n), addKernel(n), sliceKernel(offset, size)};
  Kernels kernels(wrappers);
  std::vector<float> a = randomVector(rng, n, -8.0f, 8.0f), b = randomVector(rng, n);
  DeviceBuffer aBuffer(a), bBuffer(b), y(n * 4);

  std::vector<double> expected(n);
  for (int i = 0; i < n; ++i)
    expected[i] = silu(a[i]) * b[i];
  y.fill(kNaNBits);
  kernels.run(wrappers[0], launch::siluMul(n), aBuffer.ptr, bBuffer.ptr, y.ptr);
  expectClose(y.read<float>(), expected, wrappers[0].name);

  for (int i = 0; i < n; ++i)
    expected[i] = double(a[i]) + b[i];
  y.fill(kNaNBits);
  kernels.run(wrappers[1], launch::add(n), aBuffer.ptr, bBuffer.ptr, y.ptr);
  expectClose(y.read<float>(), expected, wrappers[1].name);
  kernels.run(wrappers[1], launch::add(n), aBuffer.ptr, bBuffer.ptr, aBuffer.ptr);
  expectClose(aBuffer.read<float>(), expected, wrappers[1].name + " (in place)");

  std::vector<float> x = randomVector(rng, offset + size + 4);
  DeviceBuffer xBuffer(x), sliced(size * 4);
  sliced.fill(kNaNBits);
  kernels.run(wrappers[2], launch::slice(size), xBuffer.ptr, sliced.ptr);
  EXPECT_EQ(sliced.read<float>(), std::vector<float>(x.begin() + offset, x.begin() + offset + size));
}

TEST_F(KernelGpuTest, Argmax) {
  const int sizes[] = {32000, 7, 1, 128256};
  std::vector<KernelWrapper> wrappers;
  for (int n : sizes)
    wrappers.push_back(argmaxKernel(n));
  Kernels kernels(wrappers);
  for (size_t i = 0; i < wrappers.size(); ++i) {
    int n = sizes[i];
    std::vector<float> x = randomVector(rng, n);
    int expected = 0;
    if (n > 1) {
      // The maximum twice (the lower index wins), and a NaN that must be ignored.
      expected = n / 2;
      x[expected] = x[n - 1] = 5.0f;
      x[0] = std::numeric_limits<float>::quiet_NaN();
    }
    DeviceBuffer xBuffer(x), token(4);
    token.fill(0xffffffffu);
    kernels.run(wrappers[i], launch::argmax(), xBuffer.ptr, token.ptr);
    EXPECT_EQ(token.read<int>()[0], expected) << wrappers[i].name;
  }
}

} // namespace
} // namespace llamac::test
