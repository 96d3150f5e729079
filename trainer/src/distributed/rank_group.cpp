#include "distributed/rank_group.hpp"

#include <cstdlib>
#include <cstring>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "train/config.hpp"

namespace bulkhead {

struct RankGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

namespace {

c10::intrusive_ptr<c10d::Store> open_store(const RankSettings& settings) {
  if (settings.store.rfind("file:", 0) == 0)
    return c10::make_intrusive<c10d::FileStore>(settings.store.substr(5), settings.world_size);
  if (settings.store.rfind("tcp:", 0) == 0) {
    const std::string address = settings.store.substr(4);
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) throw ConfigError("rank store " + settings.store + ": expected tcp:HOST:PORT");
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)));
    options.isServer = settings.rank == 0;
    options.numWorkers = settings.world_size;
    options.timeout = settings.timeout;
    return c10::make_intrusive<c10d::TCPStore>(address.substr(0, colon), options);
  }
  throw ConfigError("rank store " + settings.store + ": expected file:PATH or tcp:HOST:PORT");
}

// One machine: loopback. Several: the interface GLOO_SOCKET_IFNAME names (as in PyTorch), else the
// address this machine's hostname resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const RankSettings& settings) {
  if (settings.store.rfind("file:", 0) == 0) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"))
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

std::string lost(const RankSettings& settings, const std::exception& e) {
  std::string what = e.what();
  if (auto* error = dynamic_cast<const c10::Error*>(&e)) what = error->what_without_backtrace();
  if (const auto newline = what.find('\n'); newline != std::string::npos) what.resize(newline);
  return "rank " + std::to_string(settings.rank) + " lost the other ranks: " + what;
}

}  // namespace

std::unique_ptr<RankGroup> RankGroup::join(const RankSettings& settings, bool cuda) {
  auto impl = std::make_unique<Impl>();
  std::string backend;
  try {
    impl->store = open_store(settings);
#ifdef USE_C10D_NCCL
    if (cuda) {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = settings.timeout;
      impl->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, settings.rank, settings.world_size, options);
      backend = "NCCL";
    }
#endif
    if (!impl->group) {
      auto options = c10d::ProcessGroupGloo::Options::create(settings.timeout);
      options->devices.push_back(gloo_device(settings));
      impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, settings.rank, settings.world_size, options);
      backend = cuda ? "Gloo (this LibTorch has no NCCL; tensors go through the CPU)" : "Gloo";
    }
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw RankLost(lost(settings, e));
  }
  return std::unique_ptr<RankGroup>(new RankGroup(settings, std::move(impl), backend));
}

RankGroup::RankGroup(RankSettings settings, std::unique_ptr<Impl> impl, std::string backend)
    : settings_(std::move(settings)), impl_(std::move(impl)), backend_(std::move(backend)) {}

RankGroup::~RankGroup() = default;

namespace {

template <typename Start>
void finish(const RankSettings& settings, Start start) {
  try {
    start()->wait();
  } catch (const std::exception& e) {
    throw RankLost(lost(settings, e));
  }
}

}  // namespace

void RankGroup::broadcast(torch::Tensor& tensor) {
  std::vector<torch::Tensor> tensors{tensor};
  finish(settings_, [&] { return impl_->group->broadcast(tensors); });
}

void RankGroup::reduce_to_leader(torch::Tensor& tensor) {
  std::vector<torch::Tensor> tensors{tensor};
  finish(settings_, [&] { return impl_->group->reduce(tensors); });
}

void RankGroup::allreduce_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> tensors{tensor};
  finish(settings_, [&] { return impl_->group->allreduce(tensors); });
}

std::string RankGroup::broadcast_bytes(const std::string& bytes) {
  auto size = torch::tensor({static_cast<std::int64_t>(bytes.size())}, torch::kInt64);
  broadcast(size);
  auto data = torch::empty({size.item<std::int64_t>()}, torch::kUInt8);
  if (leader()) std::memcpy(data.data_ptr(), bytes.data(), bytes.size());
  if (data.numel() > 0) broadcast(data);
  return std::string(reinterpret_cast<const char*>(data.data_ptr()), static_cast<std::size_t>(data.numel()));
}

Shard shard_of(std::int64_t rows, int rank, int world_size) {
  const std::int64_t base = rows / world_size, extra = rows % world_size;
  return {rank * base + std::min<std::int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

}  // namespace bulkhead
