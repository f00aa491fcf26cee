#include "server/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cctype>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace madam::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

HttpResponse HttpResponse::Text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

namespace {

constexpr const char* kContentSecurityPolicy =
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "name:port" -> "name"; "[::1]:80" -> "::1"; "name" -> "name".
std::string HostName(const std::string& value) {
  if (!value.empty() && value.front() == '[') {
    const size_t close = value.find(']');
    return close == std::string::npos ? value : value.substr(1, close - 1);
  }
  const size_t colon = value.find(':');
  if (colon != std::string::npos && value.find(':', colon + 1) == std::string::npos) {
    return value.substr(0, colon);
  }
  return value;
}

bool IsLoopbackName(const std::string& name) {
  return name == "localhost" || name == "::1" || name.rfind("127.", 0) == 0 ||
         (name.size() > 10 && name.compare(name.size() - 10, 10, ".localhost") == 0);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> DecodeQueryComponent(const std::string& in) {
  std::string plus_as_space = in;
  for (char& c : plus_as_space) {
    if (c == '+') c = ' ';
  }
  return PercentDecode(plus_as_space);
}

// Splits "a=1&b=x%2Fy" into decoded pairs.
Result<std::map<std::string, std::string>> ParseQuery(const std::string& query) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    const std::string part = query.substr(start, end - start);
    if (!part.empty()) {
      const size_t eq = part.find('=');
      auto key = DecodeQueryComponent(part.substr(0, eq));
      if (!key.ok()) return key.status();
      auto value = DecodeQueryComponent(eq == std::string::npos ? std::string() : part.substr(eq + 1));
      if (!value.ok()) return value.status();
      out[*key] = *value;
    }
    start = end + 1;
  }
  return out;
}

}  // namespace

bool HostAllowed(const std::string& host_header, const std::string& listen_host,
                 const std::vector<std::string>& allowed) {
  if (host_header.empty() || host_header.size() > 255) return false;
  const std::string value = Lower(host_header);
  const std::string name = HostName(value);
  if (IsLoopbackName(name)) return true;
  const std::string listen = Lower(HostName(listen_host));
  if (!listen.empty() && listen != "0.0.0.0" && listen != "::" && name == listen) return true;
  for (const std::string& a : allowed) {
    const std::string entry = Lower(a);
    if (entry == "*" || entry == value || entry == name) return true;
  }
  return false;
}

Result<std::string> PercentDecode(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) {
      return Status::InvalidArgument("truncated percent escape in '" + in + "'");
    }
    const int hi = HexValue(in[i + 1]);
    const int lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return Status::InvalidArgument("bad percent escape in '" + in + "'");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  std::string host;
  int port = 0;
  std::atomic<int> connections{0};
  // Declared after what sessions use, so pending handlers (and the sessions
  // they keep alive) are destroyed while those are still valid.
  net::io_context ioc;
  std::optional<tcp::acceptor> acceptor;
  // Waits out an accept error (EMFILE: no file descriptor left) before the
  // next accept, instead of spinning on it; doubles from 50 ms to 1 s and
  // resets on the next good accept. Touched only by the accept chain, which
  // has one handler pending at a time.
  std::optional<net::steady_timer> accept_backoff;
  std::chrono::milliseconds accept_delay{0};
  std::vector<std::thread> threads;

  void Accept();
};

namespace {

// One connection: read a request (bounded, with a deadline), answer it,
// repeat while keep-alive. All of its handlers run on its own strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl* server)
      : stream_(std::move(socket)), server_(server), buffer_(server->options.max_request_bytes) {
    server_->connections.fetch_add(1);
  }
  ~Session() { server_->connections.fetch_sub(1); }

  void Start() {
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::Read, shared_from_this()));
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->options.max_request_bytes));
    parser_->body_limit(server_->options.max_request_bytes);
    // One deadline for the whole request: a client trickling bytes (or
    // sending nothing) is cut off when it passes.
    stream_.expires_after(server_->options.read_timeout);
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, std::size_t) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted) {
      return Close();
    }
    if (ec == http::error::header_limit || ec == http::error::body_limit ||
        ec == http::error::buffer_overflow) {
      return SendError(413, "request larger than " + std::to_string(server_->options.max_request_bytes) +
                                " bytes\n");
    }
    if (ec) {
      if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
        return SendError(400, "malformed request: " + ec.message() + "\n");
      }
      return Close();
    }
    Handle(parser_->release());
  }

  void Handle(http::request<http::string_body> req) {
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    HttpResponse out;
    const bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && !head) {
      out = HttpResponse::Text(405, "method not allowed: only GET and HEAD\n");
      out.headers["Allow"] = "GET, HEAD";
    } else {
      out = Dispatch(req);
    }
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version);
    res->result(static_cast<unsigned>(out.status));
    res->set(http::field::server, "madamd");
    res->set(http::field::content_type, out.content_type);
    res->set(http::field::cache_control, "no-store");
    res->set("X-Content-Type-Options", "nosniff");
    res->set("Content-Security-Policy", kContentSecurityPolicy);
    for (const auto& [name, value] : out.headers) res->set(name, value);
    res->body() = std::move(out.body);
    // After a malformed request the stream cannot be trusted: close it.
    const bool close = !keep_alive || out.status == 400;
    res->keep_alive(!close);
    res->prepare_payload();
    if (head) res->body().clear();  // Content-Length still says what GET would send
    Write(std::move(res), close);
  }

  HttpResponse Dispatch(const http::request<http::string_body>& req) {
    const std::string target(req.target());
    if (target.empty() || target.front() != '/') {
      return HttpResponse::Text(400, "malformed request target\n");
    }
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = target;
    r.host = std::string(req[http::field::host]);
    r.authorization = std::string(req[http::field::authorization]);
    const size_t q = target.find('?');
    auto path = PercentDecode(target.substr(0, q));
    if (!path.ok()) return HttpResponse::Text(400, path.status().message() + "\n");
    r.path = *path;
    if (q != std::string::npos) {
      auto query = ParseQuery(target.substr(q + 1));
      if (!query.ok()) return HttpResponse::Text(400, query.status().message() + "\n");
      r.query = std::move(*query);
    }
    // Section 9: once the request parses, the Host check (DNS rebinding),
    // then the token; the handler runs only after both.
    if (!HostAllowed(r.host, server_->host, server_->options.allowed_hosts)) {
      return HttpResponse::Text(403, "host '" + r.host.substr(0, 100) +
                                         "' is not allowed here (madamd --http-allowed-hosts)\n");
    }
    if (server_->options.authorize) {
      constexpr std::string_view kBearer = "Bearer ";
      const std::string& a = r.authorization;
      const bool bearer = a.size() > kBearer.size() && a.compare(0, kBearer.size(), kBearer) == 0;
      if (!bearer || !server_->options.authorize(std::string_view(a).substr(kBearer.size()))) {
        HttpResponse denied = HttpResponse::Text(
            401, bearer ? "the bearer token is not valid for HTTP (a reader or admin token is needed)\n"
                        : "HTTP needs `Authorization: Bearer TOKEN` (a reader or admin token)\n");
        denied.headers["WWW-Authenticate"] = "Bearer realm=\"madamd\"";
        return denied;
      }
    }
    try {
      return server_->handler(r);
    } catch (const std::exception& e) {
      spdlog::error("http: handler for {} threw: {}", r.path, e.what());
      return HttpResponse::Text(500, "internal error\n");
    }
  }

  void SendError(int status, std::string message) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(status));
    res->set(http::field::server, "madamd");
    res->set(http::field::content_type, "text/plain; charset=utf-8");
    res->set("X-Content-Type-Options", "nosniff");
    res->set("Content-Security-Policy", kContentSecurityPolicy);
    res->body() = std::move(message);
    res->keep_alive(false);
    res->prepare_payload();
    Write(std::move(res), /*close=*/true);
  }

  void Write(std::shared_ptr<http::response<http::string_body>> res, bool close) {
    stream_.expires_after(server_->options.write_timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, close](beast::error_code ec, std::size_t) {
                        if (ec) return self->Close();
                        if (close) return self->Linger();
                        self->Read();
                      });
  }

  // After an error answer the client may still be sending (an oversized
  // body): stop sending, then read and discard for a moment before closing,
  // so that the kernel does not reset the connection before the client has
  // read the answer.
  void Linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(1));
    Drain();
  }

  void Drain() {
    stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > 4 * self->server_->options.max_request_bytes) return self->Close();
      self->Drain();
    });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl* server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::array<char, 4096> scratch_{};
  std::size_t drained_ = 0;
};

}  // namespace

void HttpServer::Impl::Accept() {
  acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;  // stopping
    if (ec) {
      // Out of descriptors (or another resource): the pending connection
      // stays in the kernel's backlog. Back off so the loop does not spin,
      // and try again once sessions have closed.
      const bool first = accept_delay.count() == 0;
      accept_delay = std::min(std::chrono::milliseconds(1000),
                              first ? std::chrono::milliseconds(50) : accept_delay * 2);
      if (first) spdlog::warn("http: accept failed ({}); backing off", ec.message());
      accept_backoff->expires_after(accept_delay);
      accept_backoff->async_wait([this](beast::error_code wait_ec) {
        if (wait_ec != net::error::operation_aborted) Accept();
      });
      return;
    }
    accept_delay = std::chrono::milliseconds(0);
    if (connections.load() >= options.max_connections) {
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      std::make_shared<Session>(std::move(socket), this)->Start();
    }
    Accept();
  });
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options, HttpHandler handler) {
  const auto colon = options.address.rfind(':');
  if (colon == std::string::npos) {
    return Status::InvalidArgument("--http address '" + options.address + "' must be host:port");
  }
  std::string host = options.address.substr(0, colon);
  const std::string port_text = options.address.substr(colon + 1);
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(port_text, &used);
    if (used != port_text.size()) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    return Status::InvalidArgument("--http address '" + options.address + "' has a bad port '" + port_text + "'");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (options.threads < 1 || options.max_request_bytes < 1024) {
    return Status::InvalidArgument("http server: threads must be >= 1 and max_request_bytes >= 1024");
  }

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handler = std::move(handler);
  beast::error_code ec;
  net::ip::address ip;
  if (host == "localhost" || host.empty()) {
    ip = net::ip::make_address(host.empty() ? "0.0.0.0" : "127.0.0.1");
  } else {
    ip = net::ip::make_address(host, ec);
    if (ec) {
      tcp::resolver resolver(impl->ioc);
      auto results = resolver.resolve(host, port_text, ec);
      if (ec || results.empty()) {
        return Status::InvalidArgument("--http host '" + host + "' cannot be resolved: " + ec.message());
      }
      ip = results.begin()->endpoint().address();
    }
  }
  tcp::endpoint endpoint(ip, static_cast<unsigned short>(port));
  impl->acceptor.emplace(net::make_strand(impl->ioc));
  auto fail = [&](const char* what) {
    return Status::Unavailable(std::string("http server: cannot ") + what + " " + options.address + ": " +
                               ec.message());
  };
  impl->acceptor->open(endpoint.protocol(), ec);
  if (ec) return fail("open");
  impl->acceptor->set_option(net::socket_base::reuse_address(true), ec);
  impl->acceptor->bind(endpoint, ec);
  if (ec) return fail("bind");
  impl->acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on");
  impl->host = ip.to_string();
  impl->port = impl->acceptor->local_endpoint().port();
  impl->accept_backoff.emplace(impl->ioc);
  impl->Accept();
  for (int i = 0; i < options.threads; ++i) {
    impl->threads.emplace_back([ioc = &impl->ioc] { ioc->run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
}

const std::string& HttpServer::host() const { return impl_->host; }
int HttpServer::port() const { return impl_->port; }

}  // namespace madam::server
