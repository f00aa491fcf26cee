// HttpServer: a small HTTP/1.1 server on Boost.Beast for madamd's dashboard,
// /metrics and JSON API (ARCHITECTURE.md section 8). It is transport only:
// every request that passes its checks goes to one HttpHandler, which routes.
//
// Limits, so that no client can stall the others or the gRPC side:
//   - a request (header and body) larger than max_request_bytes gets 413 and
//     the connection is closed;
//   - a request that is not complete within read_timeout (slow or idle
//     clients, slow-loris) is dropped; so is a response not taken within
//     write_timeout;
//   - malformed requests get 400 and the connection is closed; methods other
//     than GET and HEAD get 405;
//   - beyond max_connections open connections, new ones are closed at once.
// Keep-alive is supported.
//
// Access (ARCHITECTURE.md section 9), checked before the handler runs:
//   - the Host header must name an allowed host (DNS rebinding: a page on
//     another site cannot make a browser talk to this server under its own
//     name): loopback names, the listen host, and allowed_hosts ("*": any);
//     otherwise 403;
//   - with `authorize` set, every request needs `Authorization: Bearer TOKEN`
//     for which it returns true; otherwise 401 (WWW-Authenticate: Bearer).
// Every response carries X-Content-Type-Options: nosniff and a
// Content-Security-Policy that allows the page's own inline script and style
// and nothing from elsewhere.
//
// Threads: the server owns its io_context and `threads` threads running it
// (never gRPC's). Connections are independent (each on its own strand), so
// one slow handler or client delays only its own connection. The handler is
// called on these threads, concurrently: it must be thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace madam::server {

struct HttpRequest {
  std::string method;  // "GET" or "HEAD"
  std::string target;  // as sent: "/api/v1/runs/x/metrics?name=train%2Floss"
  std::string path;    // percent-decoded path, without the query
  std::map<std::string, std::string> query;  // percent-decoded; the last value wins
  std::string host;           // the Host header, as sent
  std::string authorization;  // the Authorization header, as sent (never logged)
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::map<std::string, std::string> headers;  // extra headers

  static HttpResponse Text(int status, std::string body);
  static HttpResponse Json(int status, std::string body);
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string address = "127.0.0.1:7071";  // host:port; port 0 picks a free one
  std::size_t max_request_bytes = 64 * 1024;
  std::chrono::milliseconds read_timeout{10000};
  std::chrono::milliseconds write_timeout{10000};
  int threads = 2;
  int max_connections = 256;
  // Host header names accepted besides loopback names and the listen host
  // (host or host:port; "*" accepts any).
  std::vector<std::string> allowed_hosts;
  // When set, a request's bearer token must make it return true (the caller
  // checks the token's role); nullptr: no token needed.
  std::function<bool(std::string_view token)> authorize;
};

// True when `host_header` (a Host header value: name or name:port, [v6]:port)
// is a loopback name, `listen_host`, or matches an entry of `allowed`.
bool HostAllowed(const std::string& host_header, const std::string& listen_host,
                 const std::vector<std::string>& allowed);

class HttpServer {
 public:
  // Binds, listens and starts the threads. INVALID_ARGUMENT for a bad
  // address, UNAVAILABLE when it cannot bind.
  static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options, HttpHandler handler);
  // Stops accepting, closes every connection and joins the threads.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& host() const;
  int port() const;  // the bound port (the real one when 0 was asked for)

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Percent-decodes `in` ('+' stays '+'; it is not a space in paths). nullopt
// for a malformed escape.
Result<std::string> PercentDecode(const std::string& in);

}  // namespace madam::server
