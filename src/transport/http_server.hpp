#pragma once

// The HTTPS and WebSocket listener.
//
// TLS 1.2 and 1.3 only, with forward-secret AEAD cipher suites. HTTP/1.1
// with keep-alive. Each connection runs as one coroutine on its own strand;
// a watchdog timer enforces the phase's deadline (handshake, idle keep-alive,
// header, body, write) by closing the socket, so a slow or silent client
// holds a connection for a bounded time whatever it does.
//
// Requests are routed through api::Router; responses get the standard
// security headers, every request is counted in the metrics and logged as
// one line (route template, never the path).
//
// Shutdown drains: the listener closes, requests in flight finish and are
// answered with `Connection: close`, idle keep-alive connections are still
// read for a short grace period, WebSockets are closed with 1001 (going away).

#include <cstdint>
#include <memory>
#include <string>

#include "api/router.hpp"
#include "core/config.hpp"
#include "core/metrics.hpp"
#include "transport/tls_material.hpp"

namespace cw::transport {

class HttpServer {
 public:
  HttpServer(const core::Config& config, const TlsMaterial& tls, const api::Router& router,
             metrics::Registry& metrics);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the configured address and starts the I/O threads. Throws
  // std::runtime_error when the address cannot be bound.
  void Start();

  // The bound port (useful with port 0).
  std::uint16_t port() const;
  std::string host() const;

  // Stops accepting and drains open connections, waiting at most the drain
  // timeout; then stops the I/O threads. Returns the number of connections
  // that had to be cut off at the deadline. Safe to call once, from any thread
  // other than an I/O thread.
  int Shutdown();

  // Open connections right now.
  int ConnectionCount() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cw::transport
