// Key/value caches. KvStorage is the preallocated per-sequence store the CPU
// backend uses: K and V for every layer, written in place at row `pos`, so a
// rollback is a smaller length and never a copy. KvCacheManager hands out one
// cache per (model, sequence), recycles released caches and reports memory.
//
// Memory limits. Every KvStorage reserves its bytes from a process-wide KV
// budget before it allocates (set_kv_memory_limit; by default the machine's
// physical memory), after checking the size computation for overflow. A cache
// that would not fit is a CapacityError naming the sizes, never std::bad_alloc
// or an OOM kill halfway through zero-filling. KvCacheManager adds a bound of
// its own on the caches it holds.
//
// Threads. A loaded model is immutable and may be shared by any number of
// threads, each generating with its own cache (and its own decoder, which owns
// caches). A cache, a decoder or a KvCacheManager serves one sequence or one
// thread: using one from two threads at once is the caller's error.
// KvStorage detects it, in every build type, against whoever holds
// exclusive_use(): while one thread holds it, truncate(), check_append() and
// commit() from any other thread throw InvalidArgument before touching the
// cache (the holding thread itself may call them). A backend's forward calls
// check_append() first and commit() last, so a forward that overlaps a hold is
// rejected. Two forward calls overlapping each other are caught when the
// backend holds exclusive_use() for the whole call, as cpu::Transformer does.
// ExclusiveUseFlag is the same check for other per-sequence objects
// (e.g. a decoder holding one for the whole of generate()).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <typeindex>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "assistgen/backend.hpp"
#include "assistgen/error.hpp"

namespace assistgen {

namespace detail {

// The machine's physical memory in bytes, or SIZE_MAX when unknown.
inline std::size_t physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  std::size_t bytes = 0;
  if (pages > 0 && page > 0 &&
      !__builtin_mul_overflow(static_cast<std::size_t>(pages), static_cast<std::size_t>(page), &bytes))
    return bytes;
#endif
  return std::numeric_limits<std::size_t>::max();
}

struct KvBudget {
  static inline std::atomic<std::size_t> limit{0};  // 0: not set, the default applies
  static inline std::atomic<std::size_t> in_use{0};
};

}  // namespace detail

/// The process-wide bound on the bytes of all live KvStorage objects (every
/// KV cache of the CPU backend, in all threads). Default: physical memory.
inline std::size_t kv_memory_limit() {
  const std::size_t l = detail::KvBudget::limit.load(std::memory_order_relaxed);
  if (l != 0) return l;
  static const std::size_t kDefault = detail::physical_memory_bytes();
  return kDefault;
}

/// Sets the process-wide KV memory bound; 0 restores the default. Caches
/// already allocated are kept when they exceed a lowered bound; the next
/// allocation fails instead.
inline void set_kv_memory_limit(std::size_t bytes) {
  detail::KvBudget::limit.store(bytes, std::memory_order_relaxed);
}

/// Bytes held by all live KvStorage objects of the process.
inline std::size_t kv_memory_in_use() { return detail::KvBudget::in_use.load(std::memory_order_relaxed); }

/// Detects two threads using one per-sequence object (a cache, a decoder) at
/// once. Hold it for the duration of each use; an overlapping second use
/// throws InvalidArgument. The holding thread itself passes check_free(), so
/// code that holds the flag may call the checked operations. A moved-to flag
/// starts free (moving an object that another thread is using is a race of
/// its own).
class ExclusiveUseFlag {
 public:
  ExclusiveUseFlag() = default;
  ExclusiveUseFlag(ExclusiveUseFlag&&) noexcept {}                            ///< A new, free flag.
  ExclusiveUseFlag& operator=(ExclusiveUseFlag&&) noexcept { return *this; }  ///< Keeps this flag's state.
  ExclusiveUseFlag(const ExclusiveUseFlag&) = delete;
  ExclusiveUseFlag& operator=(const ExclusiveUseFlag&) = delete;

  /// Marks the flag busy until destroyed. The acquire/release pair also
  /// orders a hand-over between threads (one use after the other).
  class [[nodiscard]] Hold {
   public:
    /// Throws InvalidArgument naming `user` when another thread holds the
    /// flag. Re-entrant: a Hold taken by the thread that already holds the
    /// flag (a decoder holding it around a backend's forward) is a no-op.
    Hold(ExclusiveUseFlag& flag, std::string_view user) {
      if (flag.busy_.load(std::memory_order_acquire) &&
          flag.owner_.load(std::memory_order_relaxed) == std::this_thread::get_id())
        return;  // nested: the outer Hold releases
      if (flag.busy_.exchange(true, std::memory_order_acquire))
        throw InvalidArgument(std::string(user) +
                              ": already in use by another thread; a cache or decoder serves one "
                              "sequence on one thread at a time (use one per thread)");
      flag.owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
      flag_ = &flag;
    }
    ~Hold() {
      if (!flag_) return;
      flag_->owner_.store(std::thread::id(), std::memory_order_relaxed);
      flag_->busy_.store(false, std::memory_order_release);
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    ExclusiveUseFlag* flag_ = nullptr;  // null for a nested Hold
  };

  /// Throws InvalidArgument, naming `user`, while another thread holds the flag.
  void check_free(std::string_view user) const {
    if (busy_.load(std::memory_order_acquire) &&
        owner_.load(std::memory_order_relaxed) != std::this_thread::get_id())
      throw InvalidArgument(std::string(user) +
                            ": the cache is in use by another thread (use one cache or decoder per thread)");
  }
  /// Whether a Hold is alive.
  bool busy() const { return busy_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> busy_{false};
  std::atomic<std::thread::id> owner_{};  // the holder; id() while free or being taken
};

/// Preallocated K and V for all layers of one sequence.
/// Layout per layer: [kv_heads][capacity][head_dim], float.
class KvStorage {
 public:
  /// An empty storage of capacity 0 (a moved-from or placeholder state).
  KvStorage() = default;
  /// Allocates K and V for `capacity` positions. InvalidArgument when capacity
  /// is 0; CapacityError, naming the sizes, when the byte count overflows or
  /// does not fit in what is left of kv_memory_limit() (checked before
  /// allocating, so a huge capacity never reaches the allocator).
  KvStorage(std::size_t layers, std::size_t kv_heads, std::size_t head_dim, std::size_t capacity)
      : layers_(layers), kv_heads_(kv_heads), head_dim_(head_dim), capacity_(capacity) {
    if (capacity == 0) throw InvalidArgument("KV cache capacity must be at least 1");
    std::size_t per_layer = 0, floats = 0, bytes = 0;
    if (__builtin_mul_overflow(kv_heads, capacity, &per_layer) ||
        __builtin_mul_overflow(per_layer, head_dim, &per_layer) ||
        __builtin_mul_overflow(layers, per_layer, &floats) ||
        __builtin_mul_overflow(floats, 2 * sizeof(float), &bytes))
      throw CapacityError("KV cache of capacity " + std::to_string(capacity) + " for " + std::to_string(layers) +
                          " layers x " + std::to_string(kv_heads) + " kv heads x head_dim " +
                          std::to_string(head_dim) + " overflows a 64-bit byte count");
    reserve(bytes, capacity);
    try {
      keys_.resize(floats);
      values_.resize(floats);
    } catch (const std::bad_alloc&) {
      unreserve();
      throw CapacityError("KV cache of capacity " + std::to_string(capacity) + " (" + std::to_string(bytes) +
                          " bytes) could not be allocated");
    } catch (const std::length_error&) {
      unreserve();
      throw CapacityError("KV cache of capacity " + std::to_string(capacity) + " (" + std::to_string(bytes) +
                          " bytes) is larger than a vector can hold");
    }
  }
  /// Returns its bytes to the process-wide budget.
  ~KvStorage() { unreserve(); }
  /// Moves the buffers (no copy); the source is left empty, of capacity 0.
  KvStorage(KvStorage&& o) noexcept
      : layers_(std::exchange(o.layers_, 0)),
        kv_heads_(std::exchange(o.kv_heads_, 0)),
        head_dim_(std::exchange(o.head_dim_, 0)),
        capacity_(std::exchange(o.capacity_, 0)),
        size_(std::exchange(o.size_, 0)),
        reserved_(std::exchange(o.reserved_, 0)),
        keys_(std::move(o.keys_)),
        values_(std::move(o.values_)) {}
  /// Moves the buffers (no copy); the source is left empty, of capacity 0.
  KvStorage& operator=(KvStorage&& o) noexcept {
    if (this != &o) {
      unreserve();
      layers_ = std::exchange(o.layers_, 0);
      kv_heads_ = std::exchange(o.kv_heads_, 0);
      head_dim_ = std::exchange(o.head_dim_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
      size_ = std::exchange(o.size_, 0);
      reserved_ = std::exchange(o.reserved_, 0);
      keys_ = std::move(o.keys_);
      values_ = std::move(o.values_);
    }
    return *this;
  }
  KvStorage(const KvStorage&) = delete;
  KvStorage& operator=(const KvStorage&) = delete;

  /// An explicit deep copy (the cost is the whole preallocated buffer; it
  /// counts against kv_memory_limit() like any cache).
  KvStorage clone() const {
    KvStorage c;
    c.reserve(reserved_, capacity_);
    c.layers_ = layers_;
    c.kv_heads_ = kv_heads_;
    c.head_dim_ = head_dim_;
    c.capacity_ = capacity_;
    c.size_ = size_;
    try {
      c.keys_ = keys_;
      c.values_ = values_;
    } catch (const std::bad_alloc&) {
      throw CapacityError("KV cache clone of " + std::to_string(reserved_) + " bytes could not be allocated");
    }
    return c;
  }

  std::size_t size() const { return size_; }          ///< Positions written.
  std::size_t capacity() const { return capacity_; }  ///< Positions it can hold.
  std::size_t layers() const { return layers_; }      ///< Transformer layers.
  std::size_t kv_heads() const { return kv_heads_; }  ///< Key/value heads per layer.
  std::size_t head_dim() const { return head_dim_; }  ///< Floats per head and position.
  /// Bytes of the K and V buffers.
  std::size_t bytes() const { return (keys_.size() + values_.size()) * sizeof(float); }

  /// Rollback to the first n positions. O(1). InvalidArgument when n > size(),
  /// or while another thread holds exclusive_use() (a forward call).
  void truncate(std::size_t n) {
    in_use_.check_free("KvCache::truncate");
    if (n > size_)
      throw InvalidArgument("KvCache::truncate(" + std::to_string(n) + ") beyond size " +
                            std::to_string(size_));
    size_ = n;
  }

  /// Throws CapacityError (cache unchanged) unless n more positions fit;
  /// InvalidArgument while another thread holds exclusive_use().
  void check_append(std::size_t n) const {
    in_use_.check_free("KvCache append (forward)");
    if (n > capacity_ - size_)
      throw CapacityError("KV cache full: appending " + std::to_string(n) + " positions to " +
                          std::to_string(size_) + " exceeds capacity " +
                          std::to_string(capacity_));
  }

  /// Marks n more positions as written (after the backend wrote their rows).
  /// Same errors as check_append().
  void commit(std::size_t n) {
    check_append(n);
    size_ += n;
  }

  /// Held by a backend for the whole of a forward call on this cache, so that
  /// a second thread using the same cache meanwhile gets an InvalidArgument
  /// naming `user` instead of a corrupted cache:
  /// `auto hold = kv.exclusive_use("cpu::Transformer::forward");`
  ExclusiveUseFlag::Hold exclusive_use(std::string_view user) { return ExclusiveUseFlag::Hold(in_use_, user); }

  /// Pointer to row `pos` of head `h` in layer `l` (keys or values).
  float* key(std::size_t l, std::size_t h, std::size_t pos) { return keys_.data() + offset(l, h, pos); }
  /// Same, for the values.
  float* value(std::size_t l, std::size_t h, std::size_t pos) { return values_.data() + offset(l, h, pos); }
  /// Read-only key row `pos` of head `h` in layer `l`.
  const float* key(std::size_t l, std::size_t h, std::size_t pos) const {
    return keys_.data() + offset(l, h, pos);
  }
  /// Read-only value row `pos` of head `h` in layer `l`.
  const float* value(std::size_t l, std::size_t h, std::size_t pos) const {
    return values_.data() + offset(l, h, pos);
  }

 private:
  std::size_t offset(std::size_t l, std::size_t h, std::size_t pos) const {
    return ((l * kv_heads_ + h) * capacity_ + pos) * head_dim_;
  }

  // Takes `bytes` from the process-wide budget, or throws CapacityError.
  void reserve(std::size_t bytes, std::size_t capacity) {
    const std::size_t limit = kv_memory_limit();
    std::size_t used = detail::KvBudget::in_use.load(std::memory_order_relaxed);
    do {
      if (bytes > limit || used > limit - bytes)
        throw CapacityError("KV cache of capacity " + std::to_string(capacity) + " needs " + std::to_string(bytes) +
                            " bytes; with " + std::to_string(used) + " bytes held by other caches that exceeds " +
                            "the KV memory limit of " + std::to_string(limit) +
                            " bytes (lower the capacity, free caches or raise set_kv_memory_limit)");
    } while (!detail::KvBudget::in_use.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    reserved_ = bytes;
  }
  void unreserve() noexcept {
    if (reserved_ != 0) detail::KvBudget::in_use.fetch_sub(std::exchange(reserved_, 0), std::memory_order_relaxed);
  }

  std::size_t layers_ = 0, kv_heads_ = 0, head_dim_ = 0, capacity_ = 0, size_ = 0;
  std::size_t reserved_ = 0;  // bytes taken from the process-wide KV budget
  ExclusiveUseFlag in_use_;
  std::vector<float> keys_, values_;
};

/// Memory used by a cache: its `bytes()` when it reports one, else 0.
template <class C>
std::size_t cache_bytes(const C& c) {
  if constexpr (requires { { c.bytes() } -> std::convertible_to<std::size_t>; })
    return c.bytes();
  else
    return 0;
}

/// Hands out one cache per (model, sequence id). Released caches are kept per
/// model and reused by the next acquire with a capacity they can hold, so a
/// server-style loop does not reallocate. Optionally bounded in total bytes,
/// pooled caches included (pooled caches are dropped first when a new cache
/// would not fit otherwise); every KvStorage is also bounded process-wide by
/// kv_memory_limit(), checked before anything is allocated.
/// Not thread-safe: one manager per thread, or external locking.
class KvCacheManager {
 public:
  /// Caller-chosen id of a sequence (a request, a beam).
  using SequenceId = std::uint64_t;

  /// max_bytes == 0 means unbounded.
  explicit KvCacheManager(std::size_t max_bytes = 0) : max_bytes_(max_bytes) {}

  /// The cache of `seq` for `model`, made (or recycled) on first use.
  /// Throws CapacityError when a new cache would exceed the byte bound.
  template <CausalLM M>
  typename M::Cache& acquire(const M& model, SequenceId seq, std::size_t capacity) {
    using C = typename M::Cache;
    const Key key{static_cast<const void*>(&model), seq};
    if (auto it = live_.find(key); it != live_.end()) {
      auto& c = static_cast<Holder<C>&>(*it->second).cache;
      if (c.capacity() < capacity)
        throw CapacityError("KvCacheManager: sequence " + std::to_string(seq) +
                            " already has a cache of capacity " + std::to_string(c.capacity()) +
                            ", asked for " + std::to_string(capacity));
      return c;
    }
    auto& pool = free_[key.model];
    for (auto it = pool.begin(); it != pool.end(); ++it) {
      auto& c = static_cast<Holder<C>&>(**it).cache;
      if (c.capacity() >= capacity) {
        c.truncate(0);
        auto node = std::move(*it);
        pool.erase(it);
        auto& ref = static_cast<Holder<C>&>(*node).cache;
        live_.emplace(key, std::move(node));
        return ref;
      }
    }
    auto node = std::make_unique<Holder<C>>(model.make_cache(capacity));
    const std::size_t b = cache_bytes(node->cache);
    if (max_bytes_ != 0 && bytes_total() + b > max_bytes_) trim();
    if (max_bytes_ != 0 && bytes_total() + b > max_bytes_)
      throw CapacityError("KvCacheManager: a cache of " + std::to_string(b) +
                          " bytes would exceed the bound of " + std::to_string(max_bytes_) +
                          " bytes (" + std::to_string(bytes_total()) + " held)");
    auto& ref = node->cache;
    live_.emplace(key, std::move(node));
    return ref;
  }

  /// Returns the cache of `seq` to the pool for reuse. No-op if absent.
  template <CausalLM M>
  void release(const M& model, SequenceId seq) {
    const Key key{static_cast<const void*>(&model), seq};
    auto it = live_.find(key);
    if (it == live_.end()) return;
    free_[key.model].push_back(std::move(it->second));
    live_.erase(it);
  }

  /// Drops pooled (released) caches, freeing their memory.
  void trim() { free_.clear(); }

  /// Bytes held by caches currently handed out.
  std::size_t bytes_in_use() const {
    std::size_t b = 0;
    for (const auto& [k, h] : live_) b += h->bytes();
    return b;
  }
  /// Bytes held in all, pooled caches included.
  std::size_t bytes_total() const {
    std::size_t b = bytes_in_use();
    for (const auto& [m, pool] : free_)
      for (const auto& h : pool) b += h->bytes();
    return b;
  }
  /// Caches currently handed out.
  std::size_t live_count() const { return live_.size(); }

 private:
  struct HolderBase {
    virtual ~HolderBase() = default;
    virtual std::size_t bytes() const = 0;
  };
  template <class C>
  struct Holder final : HolderBase {
    explicit Holder(C c) : cache(std::move(c)) {}
    std::size_t bytes() const override { return cache_bytes(cache); }
    C cache;
  };
  struct Key {
    const void* model;
    SequenceId seq;
    bool operator<(const Key& o) const { return model != o.model ? model < o.model : seq < o.seq; }
  };

  std::size_t max_bytes_;
  std::map<Key, std::unique_ptr<HolderBase>> live_;
  std::map<const void*, std::vector<std::unique_ptr<HolderBase>>> free_;
};

}  // namespace assistgen
