// `bouquet api`: parse flags into the API's config structs and serve (net/api/api_server.h).
#include "cli/command.h"
#include "net/api/api_server.h"
#include "net/rpc/address.h"

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration api_command{
    "api", "Serve an OpenAI-compatible HTTP API (completions, chat, streaming) in front of a swarm", [](CLI::App& sub) {
      auto swarm = std::make_shared<net::api::ApiSwarmConfig>();
      auto server = std::make_shared<net::api::ApiServerConfig>();
      auto peers = std::make_shared<std::string>();
      sub.add_option("--model", swarm->model,
                     "Hugging Face model folder (the client loads only its head and tokenizer)")
          ->required();
      auto* peer_flag = sub.add_option("--peers", *peers, "HOST:PORT,... of servers that together hold every block");
      auto* initial = sub.add_option("--initial-peers", swarm->initial_peers,
                                     "HOST:PORT,... of DHT nodes to find the model's servers through")
                          ->delimiter(',')
                          ->excludes(peer_flag);
      sub.add_flag("--local", swarm->local, "Run every block in this process (no swarm)")
          ->excludes(peer_flag)
          ->excludes(initial);
      sub.add_option("--quant", swarm->quant, "With --local, block weights: none, int8, nf4, nf4-nodq")
          ->capture_default_str();
      sub.add_option("--model-name", swarm->model_name,
                     "The model's name for clients and in the DHT (default: the folder's name)");
      sub.add_option("--listen", server->listen, "HOST:PORT to serve HTTP on (port 0: any free port)")
          ->capture_default_str();
      sub.add_option("--api-key", server->api_key, "Require 'Authorization: Bearer KEY' on every request");
      sub.add_option("--threads", server->threads, "Requests served at once (more wait in a queue)")
          ->capture_default_str()
          ->check(CLI::Range(size_t{1}, size_t{4096}));
      sub.add_option("--max-body-bytes", server->max_body_bytes, "Largest request body accepted")
          ->capture_default_str()
          ->check(CLI::Range(size_t{1024}, size_t{1} << 30));
      sub.add_option("--compression", swarm->compression, "On the wire to servers: none, f16, int8")
          ->capture_default_str();
      sub.add_option("--dtype", swarm->dtype, "Compute dtype of the head: f32, f16, bf16")->capture_default_str();
      sub.add_option("--device", swarm->device, "auto, cpu, cuda, cuda:N")->capture_default_str();
      sub.add_option("--cache-wait", swarm->cache_wait_timeout_s,
                     "Seconds a request waits for cache room on the servers before 503")
          ->capture_default_str()
          ->check(finite_in(0, 3600));
      sub.add_option("--reply-timeout", swarm->reply_timeout_s, "Seconds to wait for a server's reply")
          ->capture_default_str()
          ->check(finite_in(0.001, 3600));
      sub.add_option("--dht-listen", swarm->dht_listen, "UDP HOST:PORT of this process's own DHT node")
          ->capture_default_str();
      return [swarm, server, peers] {
        swarm->peers = net::split_list(*peers);
        return net::api::run_api(*swarm, *server);
      };
    }};

}  // namespace
}  // namespace bouquet::cli
