// SynapseDevice against the fake libSynapse (built with these tests): the
// dlopen path, the call sequence, tensor geometry listed fastest-first, the
// launch bindings, GEMMs computed through the fake, and the error without
// the library. Nothing here runs on, or proves anything about, a Gaudi.
#include <dlfcn.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <numeric>
#include <string>

#include "assistgen/hpu/device.hpp"
#include "assistgen/hpu/transformer.hpp"
#include "low_precision.hpp"

using namespace assistgen;
using namespace assistgen::hpu;

namespace {

// The fake's inspection functions, reached through the same loaded library.
struct FakeLog {
  void* lib = dlopen(ASSISTGEN_FAKE_SYNAPSE, RTLD_NOW);
  FakeLog() {
    REQUIRE(lib != nullptr);
    reset = reinterpret_cast<void (*)()>(dlsym(lib, "fake_syn_reset"));
    fail = reinterpret_cast<void (*)(const char*)>(dlsym(lib, "fake_syn_fail"));
    size = reinterpret_cast<std::size_t (*)()>(dlsym(lib, "fake_syn_log_size"));
    line = reinterpret_cast<const char* (*)(std::size_t)>(dlsym(lib, "fake_syn_log_line"));
    REQUIRE((reset && fail && size && line));
    reset();
  }
  ~FakeLog() { dlclose(lib); }
  std::vector<std::string> lines() const {
    std::vector<std::string> v;
    for (std::size_t i = 0; i < size(); ++i) v.emplace_back(line(i));
    return v;
  }
  // Index of the first line starting with `prefix` at or after `from`; -1 if none.
  long find(const std::string& prefix, long from = 0) const {
    const auto v = lines();
    for (std::size_t i = static_cast<std::size_t>(from); i < v.size(); ++i)
      if (v[i].rfind(prefix, 0) == 0) return static_cast<long>(i);
    return -1;
  }
  std::size_t count(const std::string& prefix) const {
    const auto v = lines();
    return static_cast<std::size_t>(std::count_if(
        v.begin(), v.end(), [&](const std::string& s) { return s.rfind(prefix, 0) == 0; }));
  }
  void (*reset)() = nullptr;
  void (*fail)(const char*) = nullptr;
  std::size_t (*size)() = nullptr;
  const char* (*line)(std::size_t) = nullptr;
};

SynapseOptions fake() { return {.library = ASSISTGEN_FAKE_SYNAPSE, .device_type = 4}; }

}  // namespace

TEST_CASE("without libSynapse the Synapse device raises a clear Error", "[hpu][synapse]") {
  try {
    make_synapse_device({.library = "/nonexistent/dir/libSynapse.so"});
    FAIL("no error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("Gaudi runtime libSynapse.so not found"));
    CHECK_THAT(e.what(), Catch::Contains("/nonexistent/dir/libSynapse.so"));
  }
  // The default name: on a machine without Habana's software it is not
  // found; where a libSynapse.so is installed, the default name must find it
  // (a device that then cannot be acquired is an error naming that call, not
  // "not found").
  if (void* h = dlopen("libSynapse.so", RTLD_NOW)) {
    dlclose(h);
    try {
      (void)make_synapse_device();
    } catch (const Error& e) {
      CHECK_THAT(e.what(), !Catch::StartsWith("Gaudi runtime libSynapse.so not found"));
    }
  } else {
    CHECK_THROWS_WITH(make_synapse_device(),
                      Catch::StartsWith("Gaudi runtime libSynapse.so not found"));
  }
  // A library that is not Synapse: a missing symbol is named.
  CHECK_THROWS_WITH(make_synapse_device({.library = "libc.so.6"}),
                    Catch::Contains("no symbol synInitialize"));
}

TEST_CASE("a runtime failure names the Synapse call and releases what was acquired",
          "[hpu][synapse]") {
  FakeLog log;
  log.fail("synDeviceAcquireByDeviceType");
  CHECK_THROWS_WITH(make_synapse_device(fake()),
                    Catch::Contains("synDeviceAcquireByDeviceType failed with synStatus 26"));
  CHECK(log.find("synDestroy") > log.find("synInitialize"));
  CHECK(log.count("synDeviceRelease") == 0);
  log.reset();
}

TEST_CASE("gemm and batch_gemm through the fake: call sequence, geometry, bindings, results",
          "[hpu][synapse]") {
  FakeLog log;
  {
    auto dev = make_synapse_device(fake());
    CHECK(dev->name() == "synapse");
    Graph g("mm-test");
    const int a = g.add_tensor("a", {2, 3, 4}, DType::f32, TensorKind::input);
    const int w = g.add_tensor("w", {5, 4}, DType::f32, TensorKind::weight);
    const int b = g.add_tensor("bias", {5}, DType::f32, TensorKind::weight);
    const int y = g.add_tensor("y", {2, 3, 5}, DType::f32, TensorKind::intermediate);
    const int z = g.add_tensor("z", {2, 3, 3}, DType::f32, TensorKind::output);
    // y = a w^T + bias; z[i] = y[i] y[i]^T (a batch_gemm reading an intermediate).
    g.add_node(Op::gemm, "proj", {a, w, b}, {y}, {.transpose_b = true});
    g.add_node(Op::batch_gemm, "gram", {y, y}, {z}, {.transpose_b = true});
    const auto rec = dev->compile(g);
    CHECK(rec->workspace_bytes() >= 2 * 3 * 5 * sizeof(float));

    std::vector<float> av(24), wv(20), bv(5);
    std::iota(av.begin(), av.end(), -5.0f);
    for (std::size_t i = 0; i < wv.size(); ++i) wv[i] = 0.1f * static_cast<float>(i % 7) - 0.2f;
    std::iota(bv.begin(), bv.end(), 1.0f);
    DeviceBuffer ba(dev, 96), bw(dev, 80), bb(dev, 20), bz(dev, 72),
        ws(dev, rec->workspace_bytes());
    ba.upload(av.data(), 96);
    bw.upload(wv.data(), 80);
    bb.upload(bv.data(), 20);
    dev->launch(
        *rec,
        std::vector<Binding>{
            {"a", ba.address()}, {"w", bw.address()}, {"bias", bb.address()}, {"z", bz.address()}},
        ws.address());
    dev->synchronize();
    std::vector<float> zv(18);
    bz.download(zv.data(), 72);

    std::vector<double> yref(30);
    for (std::size_t m = 0; m < 6; ++m)
      for (std::size_t n = 0; n < 5; ++n) {
        double s = bv[n];
        for (std::size_t k = 0; k < 4; ++k) s += double(av[m * 4 + k]) * wv[n * 4 + k];
        yref[m * 5 + n] = s;
      }
    for (std::size_t i = 0; i < 2; ++i)
      for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t c = 0; c < 3; ++c) {
          double s = 0;
          for (std::size_t k = 0; k < 5; ++k)
            s += yref[(i * 3 + r) * 5 + k] * yref[(i * 3 + c) * 5 + k];
          CHECK(zv[(i * 3 + r) * 3 + c] == Approx(s).epsilon(1e-5));
        }

    // The order of the runtime calls.
    const long init = log.find("synInitialize");
    const long acquire = log.find("synDeviceAcquireByDeviceType type=4");
    const long stream = log.find("synStreamCreateGeneric");
    const long create = log.find("synGraphCreate type=4");
    const long node1 = log.find(
        "synNodeCreate guid=gemm name=proj in=[a,w,bias] out=[y] transpose_a=0 transpose_b=1");
    const long node2 = log.find("synNodeCreate guid=batch_gemm name=gram in=[y,y] out=[z]");
    const long compile = log.find("synGraphCompile name=mm-test nodes=2");
    const long wsize = log.find("synWorkspaceGetSize");
    const long ids = log.find("synTensorRetrieveIds count=4");
    const long gdestroy = log.find("synGraphDestroy");
    const long h2d = log.find("synMemCopyAsync dir=0 size=96");
    const long launch = log.find("synLaunchExt recipe=mm-test tensors=4");
    const long d2h = log.find("synMemCopyAsync dir=1 size=72");
    CHECK(init == 0);
    CHECK(init < acquire);
    CHECK(acquire < stream);
    CHECK(stream < create);
    CHECK(create < node1);
    CHECK(node1 < node2);
    CHECK(node2 < compile);
    CHECK(compile < wsize);
    CHECK(wsize < ids);
    CHECK(ids < gdestroy);
    CHECK(gdestroy < h2d);
    CHECK(h2d < launch);
    CHECK(launch < d2h);
    CHECK(log.find("synHostMap size=96") == h2d - 1);  // host memory mapped for the copy
    CHECK(log.find("computed gemm") > launch);
    CHECK(log.find("computed batch_gemm") > log.find("computed gemm"));

    // Geometry is fastest-first; persistent tensors have sections, the intermediate none.
    CHECK(log.find("synTensorSetGeometry name=a sizes=[4,3,2]") >= 0);
    CHECK(log.find("synTensorSetGeometry name=w sizes=[4,5]") >= 0);
    CHECK(log.find("synTensorSetGeometry name=y sizes=[5,3,2]") >= 0);
    CHECK(log.find("synTensorSetDeviceDataType name=a dtype=4") >= 0);
    CHECK(log.find("synTensorAssignToSection name=a") >= 0);
    CHECK(log.find("synTensorAssignToSection name=y") == -1);
    CHECK(log.count("synSectionCreate") == 4);
    // Bindings carry the addresses the device allocated.
    CHECK(log.find("bind name=a addr=" + std::to_string(ba.address()) + " sizes=[4,3,2]") > launch);
    CHECK(log.find("bind name=z addr=" + std::to_string(bz.address()) + " sizes=[3,3,2]") > launch);
    CHECK(log.find("synLaunchExt recipe=mm-test tensors=4 workspace=" +
                   std::to_string(ws.address())) == launch);

    // A missing binding is caught before the runtime sees it.
    CHECK_THROWS_WITH(dev->launch(*rec, std::vector<Binding>{{"a", ba.address()}}, ws.address()),
                      Catch::Contains("without a binding for 'w'"));
  }
  // Everything was released, recipe before stream before device.
  const long rd = log.find("synRecipeDestroy name=mm-test");
  CHECK(rd >= 0);
  CHECK(log.find("synStreamDestroy") > rd);
  CHECK(log.find("synDeviceRelease") > log.find("synStreamDestroy"));
  CHECK(log.find("synDestroy") > log.find("synDeviceRelease"));
  CHECK(log.count("synDeviceMalloc") == log.count("synDeviceFree"));
  log.reset();
}

TEST_CASE("hpu::Transformer on the fake Synapse device: lowering, KV aliasing and bindings",
          "[hpu][synapse]") {
  FakeLog log;
  auto dev = make_synapse_device(fake());
  LoadOptions o;
  o.device = dev;
  o.buckets.tokens = {1, 4, 4};  // 1, 2, 4
  o.buckets.kv_len = {16, 16, 32};
  const auto model =
      Transformer::load(std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "models" / "llama-gqa", o);
  auto cache = model.make_cache(32);
  const std::vector<Token> three = {1, 17, 200};
  const Logits out = model.forward(three, cache);
  CHECK(out.rows() == 3);
  CHECK(out.cols() == 256);
  CHECK(cache.size() == 3);
  CHECK(log.count("synGraphCompile") == 1);
  const auto kind = model.graph_cache().keys().at(0).kind;
  CHECK(to_string(model.graph_cache().keys().at(0)) == kind + "/f32/b1/t4/kv16");

  // Geometry of the bucket (B 1, T 4, kv 16, kv heads 2, head_dim 8, 33 slots), fastest-first.
  CHECK(log.find("synTensorSetGeometry name=ids sizes=[4,1]") >= 0);
  CHECK(log.find("synTensorSetDeviceDataType name=ids dtype=16") >= 0);
  CHECK(log.find("synTensorSetGeometry name=mask sizes=[16,4,1,1,1]") >= 0);
  CHECK(log.find("synTensorSetGeometry name=l0.k_cache sizes=[8,33,2,1]") >= 0);
  CHECK(log.find("synTensorSetGeometry name=l0.k_cache.read sizes=[8,16,2,1]") >= 0);
  CHECK(log.find("synTensorSetGeometry name=logits sizes=[256,4,1]") >= 0);
  // The lowering, in order, for layer 0's attention.
  long at = log.find("synNodeCreate guid=gather_fwd_f32 name=embed.out in=[embed,ids]");
  for (const std::string p :
       {"synNodeCreate guid=rms_norm_ex_fwd_f32 name=l0.attn_norm.out",
        "synNodeCreate guid=gemm name=l0.q in=[l0.attn_norm.out,l0.q.w] out=[l0.q.out] "
        "transpose_a=0 transpose_b=1",
        "synNodeCreate guid=rotary_pos_embedding_fwd_f32 name=l0.q.rope in=[l0.q.out,cos,sin]",
        "synNodeCreate guid=transpose name=l0.k.heads in=[l0.k.4d] out=[l0.k.heads] perm=[0,2,1,3]",
        "synNodeCreate guid=index_copy_fwd_f32 name=l0.k_cache.write "
        "in=[l0.k_cache,write_index,l0.k.heads] "
        "out=[l0.k_cache.out] axis=1",
        "synNodeCreate guid=slice name=l0.k_cache.read in=[l0.k_cache.out] out=[l0.k_cache.read] "
        "ends=[8,16,2,1]",
        "synNodeCreate guid=transpose name=l0.q.heads in=[l0.q.5d] out=[l0.q.heads] "
        "perm=[0,3,1,2,4]",
        "synNodeCreate guid=batch_gemm name=l0.scores in=[l0.q.3d,l0.k_cache.read.3d]",
        "synNodeCreate guid=add_fwd_f32 name=l0.scores.masked in=[l0.scores.5d,mask]",
        "synNodeCreate guid=softmax_fwd_f32 name=l0.probs in=[l0.scores.masked] out=[l0.probs] "
        "axis=0",
        "synNodeCreate guid=batch_gemm name=l0.context in=[l0.probs.3d,l0.v_cache.read.3d] "
        "out=[l0.context] "
        "transpose_a=0 transpose_b=0",
        "synNodeCreate guid=silu_fwd_f32 name=l0.act.silu in=[l0.gate.out]",
        "synNodeCreate guid=mult_fwd_f32 name=l0.act in=[l0.act.silu,l0.up.out] out=[l0.act]",
        "synNodeCreate guid=gemm name=lm_head in=[final_norm.out,lm_head] out=[logits]"}) {
    INFO(p);
    const long next = log.find(p, at);
    CHECK(next > at);
    if (next > at) at = next;
  }
  // The written KV version shares the read version's section: the in-place update.
  const auto lines = log.lines();
  auto section_of = [&](const std::string& name) {
    const std::string p = "synTensorAssignToSection name=" + name + " section=";
    for (const auto& l : lines)
      if (l.rfind(p, 0) == 0) return l.substr(p.size(), l.find(' ', p.size()) - p.size());
    return std::string("none");
  };
  CHECK(section_of("l0.k_cache") != "none");
  CHECK(section_of("l0.k_cache.out") == section_of("l0.k_cache"));
  CHECK(section_of("l1.v_cache.out") == section_of("l1.v_cache"));
  CHECK(section_of("embed") != section_of("lm_head"));
  // Both versions are bound to the cache's own memory for layer 0.
  const std::string k0 = std::to_string(cache.kv().key_address(0));
  CHECK(log.find("bind name=l0.k_cache addr=" + k0 + " sizes=[8,33,2,1]") >= 0);
  CHECK(log.find("bind name=l0.k_cache.out addr=" + k0 + " sizes=[8,33,2,1]") >= 0);
  CHECK(log.find("bind name=l1.v_cache addr=" + std::to_string(cache.kv().value_address(1))) >= 0);
  // Every weight is bound to memory that was allocated and filled before the launch.
  const long launch = log.find("synLaunchExt");
  for (const auto& l : lines)
    if (l.rfind("bind name=embed addr=", 0) == 0) {
      const std::string addr = l.substr(21, l.find(' ', 21) - 21);
      const long alloc =
          log.find("synDeviceMalloc size=" + std::to_string(256 * 64 * 4) + " addr=" + addr);
      CHECK(alloc >= 0);
      CHECK(alloc < launch);
      CHECK(log.find("synMemCopyAsync dir=0 size=65536", alloc) < launch);
    }

  // Rollback and one more token: bucket t1 compiles once, then is reused.
  cache.truncate(2);
  model.forward(std::vector<Token>{200}, cache);
  model.forward(std::vector<Token>{45}, cache);
  CHECK(log.count("synGraphCompile") == 2);
  CHECK(log.count("synLaunchExt") == 3);
  CHECK(cache.size() == 4);
  log.reset();
}

TEST_CASE(
    "an fp8 linear through the fake Synapse: E4M3 weights and scales bound, widened, "
    "scaled, equal to the reference device",
    "[hpu][synapse][fp8]") {
  FakeLog log;
  auto syn_dev = make_synapse_device(fake());
  auto ref_dev = make_cpu_reference_device();
  constexpr std::size_t M = 3, K = 8, N = 4;
  std::vector<float> x(M * K), w(N * K), bias(N);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * static_cast<float>(i % 7) - 0.8f;
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.05f * static_cast<float>((i * 5) % 11) - 0.2f;
  for (std::size_t j = 0; j < N; ++j) bias[j] = 0.1f * static_cast<float>(j);
  const auto q = hpu::detail::quantize_fp8(w, N, K, true);
  auto run = [&](const std::shared_ptr<Device>& dev) {
    Graph g("fp8-linear");
    const int xi = g.add_tensor("x", {M, K}, DType::f32, TensorKind::input);
    const int wi = g.add_tensor("w", {N, K}, DType::f8_e4m3, TensorKind::weight);
    const int bi = g.add_tensor("b", {N}, DType::f32, TensorKind::weight);
    const int si = g.add_tensor("s", {N}, DType::f32, TensorKind::weight);
    const int xb = g.add_tensor("x.bf16", {M, K}, DType::bf16, TensorKind::intermediate);
    const int yi = g.add_tensor("y", {M, N}, DType::f32, TensorKind::output);
    g.add_node(Op::cast_bf16, "cast", {xi}, {xb});
    g.add_node(Op::gemm, "mm", {xb, wi, bi, si}, {yi}, {.transpose_b = true});
    const auto rec = dev->compile(g);
    DeviceBuffer bx(dev, M * K * 4), bw(dev, N * K), bb(dev, N * 4), bs(dev, N * 4),
        by(dev, M * N * 4), ws(dev, std::max<std::size_t>(rec->workspace_bytes(), 64));
    bx.upload(x.data(), bx.bytes());
    bw.upload(q.codes.data(), bw.bytes());
    bb.upload(bias.data(), bb.bytes());
    bs.upload(q.scales.data(), bs.bytes());
    dev->launch(*rec,
                std::vector<Binding>{{"x", bx.address()},
                                     {"w", bw.address()},
                                     {"b", bb.address()},
                                     {"s", bs.address()},
                                     {"y", by.address()}},
                ws.address());
    dev->synchronize();
    std::vector<float> y(M * N);
    by.download(y.data(), by.bytes());
    return std::pair{y, std::to_string(bs.address())};
  };
  const auto [want, ref_scale_addr] = run(ref_dev);
  const auto [got, scale_addr] = run(syn_dev);
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i] == Approx(want[i]).epsilon(1e-5));
  CHECK(log.find("synTensorSetDeviceDataType name=w dtype=4096") >= 0);  // syn_type_fp8_143
  CHECK(log.find("synTensorSetDeviceDataType name=x.bf16 dtype=2") >= 0);
  long at = log.find("synNodeCreate guid=cast_f32_to_bf16 name=cast in=[x] out=[x.bf16]");
  for (const std::string p :
       {"synNodeCreate guid=cast_f8_to_bf16 name=mm.widen in=[w] out=[mm.w_bf16]",
        "synNodeCreate guid=gemm name=mm.gemm in=[x.bf16,mm.w_bf16] out=[mm.acc]",
        "synNodeCreate guid=mult_fwd_f32 name=mm.scale in=[mm.acc,s]",
        "synNodeCreate guid=add_fwd_f32 name=mm in=[mm.scaled,b] out=[y]"}) {
    INFO(p);
    const long next = log.find(p, at);
    CHECK(next > at);
    if (next > at) at = next;
  }
  CHECK(log.find("bind name=s addr=" + scale_addr + " sizes=[4]") >= 0);
  CHECK(log.find("computed cast_f8_to_bf16") >= 0);
  CHECK(log.find("computed mult_fwd_f32") > log.find("computed gemm"));
  log.reset();
}
