#include "sim/offload_node.h"

#include <simgrid/s4u/Disk.hpp>
#include <simgrid/s4u/Host.hpp>
#include <simgrid/s4u/Io.hpp>

#include <cmath>

namespace bouquet::sim {
namespace sg4 = simgrid::s4u;

namespace {
constexpr int64_t kBlockBuffers = 2;  // the block being computed and the one streaming in
}  // namespace

OffloadNode::OffloadNode(SimContext& context, const ClientConfig& config, const std::string& host, size_t result_index)
    : NodeLoop(context.transport, host),
      context_(context),
      config_(config),
      gpu_(*find_device(config.offload->gpu)),
      result_index_(result_index) {}

ClientResult& OffloadNode::result() { return context_.result.clients.at(result_index_); }

void OffloadNode::close_books() {
  if (!done_ && result().started_s >= 0 && now() > measure_from_) result().measured_s = now() - measure_from_;
}

void OffloadNode::on_start() {
  result().started_s = now();
  runs_left_ = config_.work.repeat;
  at(config_.start_s, [this] {
    measure_from_ = now();
    next_step();
  });
}

// Generation: a prompt pass then one pass per new token, each followed by the LM head; forward:
// one pass per repeat.
void OffloadNode::next_step() {
  const WorkConfig& w = config_.work;
  if (w.kind == "generate") {
    if (steps_left_ == 0 && position_ == 0) {
      BlockWork prompt{.batch = w.batch, .new_tokens = w.prefix_tokens, .cache_tokens = 0};
      steps_left_ = w.new_tokens;
      position_ = w.prefix_tokens;
      return pass(prompt, [this] { next_step(); });
    }
    ++result().steps;
    result().tokens += w.batch;
    const double head_s = context_.cost.client_step(gpu_, context_.shape, w.batch, w.batch).seconds;
    if (steps_left_ > 0) {
      --steps_left_;
      BlockWork step{.batch = w.batch, .new_tokens = 1, .cache_tokens = position_};
      ++position_;
      return compute(head_s, [this, step] { pass(step, [this] { next_step(); }); });
    }
    return compute(head_s, [this] {
      if (--runs_left_ > 0) {
        position_ = 0;
        return next_step();
      }
      result().measured_s = now() - measure_from_;
      result().finished = true;
      result().ended_s = now();
      done_ = true;
    });
  }
  if (runs_left_ == 0) {
    result().measured_s = now() - measure_from_;
    result().finished = true;
    result().ended_s = now();
    done_ = true;
    return;
  }
  --runs_left_;
  BlockWork forward{.batch = w.batch, .new_tokens = w.sequence_tokens, .cache_tokens = 0, .backward = false};
  pass(forward, [this] {
    ++result().steps;
    result().tokens += config_.work.batch * config_.work.sequence_tokens;
    next_step();
  });
}

void OffloadNode::pass(BlockWork work, std::function<void()> then) {
  work_ = work;
  then_ = std::move(then);
  read_ = reading_ = computed_ = 0;
  computing_ = false;
  read_next();
}

void OffloadNode::read_next() {
  const int64_t blocks = context_.shape.num_blocks;
  if (reading_ >= blocks || reading_ - computed_ >= kBlockBuffers) return;
  ++reading_;
  const double bytes = context_.cost.block_weight_bytes(context_.shape, context_.format);
  sg4::Disk* pcie = sg4::Host::by_name(host())->get_disks().front();
  when_done(pcie->read_async(static_cast<sg_size_t>(std::llround(bytes))), [this] {
    ++read_;
    compute_next();
    read_next();
  });
}

void OffloadNode::compute_next() {
  if (computing_ || computed_ >= read_) return;
  computing_ = true;
  const double seconds = context_.cost.block_step(gpu_, context_.shape, context_.format, work_).seconds;
  compute(seconds, [this] {
    computing_ = false;
    ++computed_;
    if (computed_ == context_.shape.num_blocks) return then_();
    read_next();  // a buffer was freed
    compute_next();
  });
}

}  // namespace bouquet::sim
