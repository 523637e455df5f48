// AnyModel: type erasure for CausalLM, so that a program (the CLI, a server)
// can choose its backends at run time and still use the templates written
// against the concept: AnyModel itself models CausalLM, with a type-erased
// AnyModel::Cache. The cost is one virtual call per forward() and per cache
// operation, nothing per token inside the backend.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/error.hpp"
#include "assistgen/layer_split.hpp"
#include "assistgen/types.hpp"

namespace assistgen {

/// A CausalLM of any concrete type. Copies share the (immutable) model.
class AnyModel {
  struct CacheConcept {
    virtual ~CacheConcept() = default;
    virtual std::size_t size() const = 0;
    virtual std::size_t capacity() const = 0;
    virtual void truncate(std::size_t n) = 0;
    virtual void keep(std::size_t base, std::span<const std::uint32_t> rows) = 0;
    virtual std::unique_ptr<CacheConcept> clone() const = 0;
    virtual std::size_t bytes() const = 0;
  };
  struct ModelConcept {
    virtual ~ModelConcept() = default;
    virtual std::size_t vocab_size() const = 0;
    virtual PositionLimits position_limits() const = 0;
    virtual std::unique_ptr<CacheConcept> make_cache(std::size_t capacity) const = 0;
    virtual Logits forward(std::span<const Token> tokens, CacheConcept& cache) const = 0;
    virtual void forward(std::span<const Token> tokens, CacheConcept& cache, Logits& out) const = 0;
    virtual void forward(std::span<const ForwardRequest> requests,
                         std::span<CacheConcept* const> caches, Logits& out,
                         const LayerPlan& plan) const = 0;
    virtual bool continues_trees() const = 0;
    virtual const std::type_info& type() const = 0;
    virtual const void* address() const = 0;
    // SplitsLayers (layer_split.hpp); splits_layers() false: the rest throw.
    virtual bool splits_layers() const = 0;
    virtual std::size_t num_layers() const = 0;
    virtual std::size_t hidden_size() const = 0;
    virtual void forward_lower(std::span<const Token> tokens, CacheConcept& cache, std::size_t split,
                               std::vector<float>& hidden, Logits& out, std::size_t outputs) const = 0;
    virtual void forward_upper(CacheConcept& cache, std::size_t first, std::span<const float> hidden,
                               std::size_t split, Logits& out, std::size_t outputs) const = 0;
  };

  template <class C>
  struct CacheImpl final : CacheConcept {
    explicit CacheImpl(C c) : cache(std::move(c)) {}
    std::size_t size() const override { return cache.size(); }
    std::size_t capacity() const override { return cache.capacity(); }
    void truncate(std::size_t n) override { cache.truncate(n); }
    std::size_t bytes() const override {
      if constexpr (requires {
                      { cache.bytes() } -> std::convertible_to<std::size_t>;
                    })
        return cache.bytes();
      else
        return 0;
    }
    void keep(std::size_t base, std::span<const std::uint32_t> rows) override {
      assistgen::keep_rows(cache, base, rows);
    }
    std::unique_ptr<CacheConcept> clone() const override {
      if constexpr (requires {
                      { cache.clone() } -> std::same_as<C>;
                    })
        return std::make_unique<CacheImpl>(cache.clone());
      else
        throw UnsupportedError(std::string("AnyModel::Cache::clone: the cache type ") +
                               typeid(C).name() + " has no clone()");
    }
    C cache;
  };

  template <CausalLM M>
  struct ModelImpl final : ModelConcept {
    explicit ModelImpl(std::shared_ptr<const M> m) : model(std::move(m)) {}
    std::size_t vocab_size() const override {
      return static_cast<std::size_t>(model->vocab_size());
    }
    PositionLimits position_limits() const override { return assistgen::position_limits(*model); }
    std::unique_ptr<CacheConcept> make_cache(std::size_t capacity) const override {
      return std::make_unique<CacheImpl<typename M::Cache>>(model->make_cache(capacity));
    }
    Logits forward(std::span<const Token> tokens, CacheConcept& cache) const override {
      auto* c = dynamic_cast<CacheImpl<typename M::Cache>*>(&cache);
      if (!c)
        throw InvalidArgument("AnyModel::forward: the cache was made by a model of another type");
      return model->forward(tokens, c->cache);
    }
    void forward(std::span<const Token> tokens, CacheConcept& cache, Logits& out) const override {
      auto* c = dynamic_cast<CacheImpl<typename M::Cache>*>(&cache);
      if (!c)
        throw InvalidArgument("AnyModel::forward: the cache was made by a model of another type");
      forward_into(*model, tokens, c->cache, out);
    }
    void forward(std::span<const ForwardRequest> requests, std::span<CacheConcept* const> caches,
                 Logits& out, const LayerPlan& plan) const override {
      using C = typename M::Cache;
      thread_local std::vector<C*> typed;  // reused: a decoding loop allocates nothing here
      typed.clear();
      for (std::size_t r = 0; r < caches.size(); ++r) {
        auto* c = dynamic_cast<CacheImpl<C>*>(caches[r]);
        if (!c)
          throw InvalidArgument("AnyModel::forward: the cache of request " + std::to_string(r) +
                                " was made by a model of another type");
        typed.push_back(&c->cache);
      }
      // The wrapped model's batched forward, or the generic fallback.
      assistgen::forward_batch(*model, requests, std::span<C* const>(typed), out, plan);
    }
    bool continues_trees() const override { return assistgen::continues_trees(*model); }
    const std::type_info& type() const override { return typeid(M); }
    const void* address() const override { return model.get(); }
    bool splits_layers() const override { return SplitsLayers<M>; }
    std::size_t num_layers() const override {
      if constexpr (SplitsLayers<M>)
        return model->num_layers();
      else
        throw no_split();
    }
    std::size_t hidden_size() const override {
      if constexpr (SplitsLayers<M>)
        return model->hidden_size();
      else
        throw no_split();
    }
    void forward_lower(std::span<const Token> tokens, CacheConcept& cache, std::size_t split,
                       std::vector<float>& hidden, Logits& out, std::size_t outputs) const override {
      if constexpr (SplitsLayers<M>)
        model->forward_lower(tokens, own(cache), split, hidden, out, outputs);
      else
        throw no_split();
    }
    void forward_upper(CacheConcept& cache, std::size_t first, std::span<const float> hidden,
                       std::size_t split, Logits& out, std::size_t outputs) const override {
      if constexpr (SplitsLayers<M>)
        model->forward_upper(own(cache), first, hidden, split, out, outputs);
      else
        throw no_split();
    }
    static typename M::Cache& own(CacheConcept& cache) {
      auto* c = dynamic_cast<CacheImpl<typename M::Cache>*>(&cache);
      if (!c) throw InvalidArgument("AnyModel::forward: the cache was made by a model of another type");
      return c->cache;
    }
    static UnsupportedError no_split() {
      return UnsupportedError(std::string("AnyModel: the model type ") + typeid(M).name() +
                              " cannot split a forward pass at a layer (it has no forward_lower / "
                              "forward_upper, layer_split.hpp), which self-speculation needs");
    }
    std::shared_ptr<const M> model;
  };

 public:
  /// A cache made by an AnyModel; usable only with models sharing that model.
  class Cache {
   public:
    /// A cache holding nothing (size and capacity 0); forward() rejects it.
    Cache() = default;
    /// Takes over the wrapped cache; the source is left empty.
    Cache(Cache&&) noexcept = default;
    /// Takes over the wrapped cache; the source is left empty.
    Cache& operator=(Cache&&) noexcept = default;

    /// Positions held (the wrapped cache's size(); 0 when empty).
    std::size_t size() const { return impl_ ? impl_->size() : 0; }
    /// Positions it can hold (the wrapped cache's capacity(); 0 when empty).
    std::size_t capacity() const { return impl_ ? impl_->capacity() : 0; }
    /// Memory held (the wrapped cache's bytes(), 0 when it reports none or
    /// is empty): what a KvCacheManager's byte bound counts.
    std::size_t bytes() const { return impl_ ? impl_->bytes() : 0; }
    /// Rollback; throws InvalidArgument when n > size().
    void truncate(std::size_t n) {
      if (!impl_) {
        if (n == 0) return;
        throw InvalidArgument("AnyModel::Cache::truncate(" + std::to_string(n) +
                              ") on an empty cache");
      }
      impl_->truncate(n);
    }
    /// keep_rows() on the wrapped cache (backend.hpp): its keep(base, rows),
    /// or UnsupportedError when it has none and the rows would move.
    void keep(std::size_t base, std::span<const std::uint32_t> rows) {
      if (!impl_) {
        if (base == 0 && rows.empty()) return;
        throw InvalidArgument("AnyModel::Cache::keep on an empty cache");
      }
      impl_->keep(base, rows);
    }
    /// An explicit deep copy; UnsupportedError if the wrapped cache has no clone().
    Cache clone() const {
      Cache c;
      c.owner_ = owner_;
      if (impl_) c.impl_ = impl_->clone();
      return c;
    }
    /// The wrapped cache; InvalidArgument when it is not a C.
    template <class C>
    const C& get() const {
      auto* p = dynamic_cast<const CacheImpl<C>*>(impl_.get());
      if (!p)
        throw InvalidArgument(std::string("AnyModel::Cache::get: the cache is not a ") +
                              typeid(C).name());
      return p->cache;
    }

   private:
    friend class AnyModel;
    Cache(std::unique_ptr<CacheConcept> impl, const void* owner)
        : impl_(std::move(impl)), owner_(owner) {}
    std::unique_ptr<CacheConcept> impl_;
    const void* owner_ = nullptr;
  };

  /// Tree requests are passed on: the wrapped model runs them when it
  /// attends trees (AttendsTrees), else forward() throws UnsupportedError
  /// naming the capability.
  static constexpr bool kTreeRequests = true;
  /// Whether the wrapped model continues cached trees (ContinuesTrees); a
  /// request that does otherwise is an UnsupportedError naming it.
  bool continues_trees() const { return impl_->continues_trees(); }

  /// Takes ownership of `model` (moved in).
  template <CausalLM M>
  requires(!std::same_as<std::remove_cvref_t<M>, AnyModel> &&
           !std::is_lvalue_reference_v<M>) explicit AnyModel(M&& model)
      : impl_(std::make_shared<ModelImpl<M>>(std::make_shared<const M>(std::move(model)))) {}

  /// Shares ownership of `model`.
  template <CausalLM M>
  explicit AnyModel(std::shared_ptr<const M> model) {
    if (!model) throw InvalidArgument("AnyModel: null model");
    impl_ = std::make_shared<ModelImpl<M>>(std::move(model));
  }

  /// Wraps `model` without owning it; it must outlive every copy of the result.
  template <CausalLM M>
  static AnyModel borrow(const M& model) {
    return AnyModel(std::shared_ptr<const M>(&model, [](const M*) {}));
  }

  /// The wrapped model's vocabulary size (logits per row of forward()).
  std::size_t vocab_size() const { return impl_->vocab_size(); }
  /// The wrapped model's PositionLimits (none when it does not declare them).
  PositionLimits position_limits() const { return impl_->position_limits(); }
  /// An empty cache of `capacity` positions made by the wrapped model;
  /// usable with this AnyModel and its copies only.
  Cache make_cache(std::size_t capacity) const {
    return Cache(impl_->make_cache(capacity), impl_->address());
  }

  /// The wrapped model's forward. Throws InvalidArgument when `cache` was not
  /// made by this model (or a copy of it).
  Logits forward(std::span<const Token> tokens, Cache& cache) const {
    if (!cache.impl_ || cache.owner_ != impl_->address())
      throw InvalidArgument("AnyModel::forward: the cache was not made by this model");
    return impl_->forward(tokens, *cache.impl_);
  }

  /// As forward(tokens, cache), with the logits written into `out` (reusing
  /// its allocation when the wrapped backend has an allocation-free forward).
  void forward(std::span<const Token> tokens, Cache& cache, Logits& out) const {
    if (!cache.impl_ || cache.owner_ != impl_->address())
      throw InvalidArgument("AnyModel::forward: the cache was not made by this model");
    impl_->forward(tokens, *cache.impl_, out);
  }

  /// The batched forward of backend.hpp (ForwardsBatches): the wrapped
  /// model's own when it has one, else forward_batch()'s generic fallback
  /// (chains only, all layers: trees and layer plans are then an
  /// UnsupportedError). Throws InvalidArgument when a cache was not made by
  /// this model.
  void forward(std::span<const ForwardRequest> requests, std::span<Cache* const> caches,
               Logits& out, const LayerPlan& plan = {}) const {
    detail::check_requests<Cache>("AnyModel::forward", requests, caches);
    thread_local std::vector<CacheConcept*> impls;
    impls.clear();
    for (std::size_t r = 0; r < caches.size(); ++r) {
      if (!caches[r]->impl_ || caches[r]->owner_ != impl_->address())
        throw InvalidArgument("AnyModel::forward: the cache of request " + std::to_string(r) +
                              " was not made by this model");
      impls.push_back(caches[r]->impl_.get());
    }
    impl_->forward(requests, std::span<CacheConcept* const>(impls), out, plan);
  }
  /// Whether the wrapped model splits a forward pass at a layer
  /// (layer_split.hpp: SplitsLayers); the four members below throw
  /// UnsupportedError, naming the type, when it does not.
  bool splits_layers() const { return impl_->splits_layers(); }
  /// The wrapped model's transformer layers (SplitsLayers).
  std::size_t num_layers() const { return impl_->num_layers(); }
  /// The wrapped model's residual row width (SplitsLayers).
  std::size_t hidden_size() const { return impl_->hidden_size(); }
  /// The wrapped model's forward_lower (layer_split.hpp).
  void forward_lower(std::span<const Token> tokens, Cache& cache, std::size_t split, std::vector<float>& hidden,
                     Logits& out, std::size_t outputs) const {
    impl_->forward_lower(tokens, checked(cache), split, hidden, out, outputs);
  }
  /// The wrapped model's forward_upper (layer_split.hpp).
  void forward_upper(Cache& cache, std::size_t first, std::span<const float> hidden, std::size_t split,
                     Logits& out, std::size_t outputs) const {
    impl_->forward_upper(checked(cache), first, hidden, split, out, outputs);
  }

  /// The wrapped model when it is an M, else nullptr.
  template <class M>
  const M* get_if() const {
    return impl_->type() == typeid(M) ? static_cast<const M*>(impl_->address()) : nullptr;
  }
  /// typeid of the wrapped model's concrete type.
  const std::type_info& type() const { return impl_->type(); }

 private:
  CacheConcept& checked(Cache& cache) const {
    if (!cache.impl_ || cache.owner_ != impl_->address())
      throw InvalidArgument("AnyModel::forward: the cache was not made by this model");
    return *cache.impl_;
  }
  std::shared_ptr<const ModelConcept> impl_;
};

static_assert(CausalLM<AnyModel> && SplitsLayers<AnyModel>);
static_assert(ForwardsBatches<AnyModel>);
static_assert(AttendsTrees<AnyModel> && CacheHasKeep<AnyModel::Cache>);

}  // namespace assistgen
