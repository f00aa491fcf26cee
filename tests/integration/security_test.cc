// ARCHITECTURE.md section 9 against real madamd processes on loopback: auth tokens and
// roles, TLS and mutual TLS with certificates made here by `openssl`, and
// limits (message size, 1,000 idle connections). ARCHITECTURE.md section 9.
#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "madam/v1/coordinator.grpc.pb.h"
#include "madam/v1/worker.grpc.pb.h"
#include "server/auth.h"
#include "tests/support/child_process.h"

namespace madam {
namespace {

using madam::testing::ChildProcess;
using madam::testing::TempDir;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kAdminToken[] = "adm-3f9c2e71b0d84a6c";
constexpr char kReaderToken[] = "rdr-81d5a0c4e7f2936b";
constexpr char kWorkerToken[] = "wrk-5b7e19d3c2a0f468";

void WriteFile(const std::string& path, const std::string& text, mode_t mode = 0600) {
  {
    std::ofstream out(path, std::ios::trunc);
    out << text;
  }
  ASSERT_EQ(chmod(path.c_str(), mode), 0) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string TokenFileText() {
  return std::string("# madam tokens\n") + kAdminToken + " admin\n\n" + kReaderToken +
         "   reader  # the dashboard\n" + kWorkerToken + " worker\n";
}

// A process whose stdout and stderr both land in Lines().
std::unique_ptr<ChildProcess> StartCapturing(std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1"});
  return std::make_unique<ChildProcess>(argv);
}

// Everything the process printed, once its output has ended.
std::string AllOutput(ChildProcess& child) {
  child.WaitForLine(std::regex("$^"), seconds(10));  // returns at end of output
  std::string text;
  for (const std::string& line : child.Lines()) text += line + "\n";
  return text;
}

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

RunResult RunToEnd(std::vector<std::string> argv, seconds timeout = seconds(30)) {
  auto child = StartCapturing(std::move(argv));
  RunResult result;
  std::optional<int> code = child->Wait(timeout);
  result.exit_code = code ? *code : -1;
  result.output = AllOutput(*child);
  return result;
}

// madamd with output captured, on `listen`; fails the test when it does not
// start. Plain HTTP is off so that tests running in parallel never collide.
struct Server {
  std::unique_ptr<ChildProcess> process;
  std::string address;
  std::string Output() { return process ? AllOutput(*process) : ""; }
};

Server StartServer(const std::string& db, const std::vector<std::string>& flags,
                   const std::string& listen = "127.0.0.1:0") {
  std::vector<std::string> argv = {MADAMD_PATH, "--listen", listen, "--db", db, "--http", ""};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Server server;
  server.process = StartCapturing(argv);
  auto line = server.process->WaitForLine(std::regex(R"(listening on (\S+):(\d+))"), seconds(20));
  if (!line) {
    ADD_FAILURE() << "madamd did not start:\n" << AllOutput(*server.process);
    return server;
  }
  server.address = "127.0.0.1:" + (*line)[2];
  return server;
}

// Ends madamd with SIGTERM and returns all it printed.
std::string StopServer(Server& server) {
  server.process->Signal(SIGTERM);
  server.process->Wait(seconds(10));
  return server.Output();
}

void Prepare(grpc::ClientContext& ctx, const std::string& token, seconds deadline = seconds(10)) {
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
}

std::string SmokeSweep() { return ReadFile(std::string(MADAM_SOURCE_DIR) + "/sweeps/smoke.yaml"); }

// ---------------------------------------------------------------- auth ----

TEST(SecurityStartupTest, RefusesNonLoopbackListenWithoutTokens) {
  TempDir dir;
  RunResult r = RunToEnd({MADAMD_PATH, "--listen", "0.0.0.0:0", "--db", dir.path() + "/m.db",
                          "--http", ""});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("refusing to listen on 0.0.0.0:0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--auth-tokens"), std::string::npos) << r.output;
}

TEST(SecurityStartupTest, StartsBeyondLoopbackWithInsecureOrTokens) {
  TempDir dir;
  {
    Server s = StartServer(dir.path() + "/a.db", {"--insecure"}, "0.0.0.0:0");
    EXPECT_FALSE(s.address.empty());
  }
  WriteFile(dir.path() + "/tokens", TokenFileText());
  Server s = StartServer(dir.path() + "/b.db", {"--auth-tokens", dir.path() + "/tokens"}, "0.0.0.0:0");
  ASSERT_FALSE(s.address.empty());
  // Beyond loopback with tokens (plaintext): every call needs one.
  auto stub = v1::Coordinator::NewStub(grpc::CreateChannel(s.address, grpc::InsecureChannelCredentials()));
  for (const std::string token : {"", kReaderToken}) {
    grpc::ClientContext ctx;
    Prepare(ctx, token);
    v1::ListSweepsResponse resp;
    grpc::Status status = stub->ListSweeps(&ctx, v1::ListSweepsRequest(), &resp);
    EXPECT_EQ(status.error_code(), token.empty() ? grpc::StatusCode::UNAUTHENTICATED : grpc::StatusCode::OK)
        << status.error_message();
  }
}

TEST(SecurityStartupTest, RefusesTokenFileReadableByOthers) {
  TempDir dir;
  const std::string path = dir.path() + "/tokens";
  WriteFile(path, TokenFileText(), 0644);
  RunResult r = RunToEnd({MADAMD_PATH, "--listen", "127.0.0.1:0", "--db", dir.path() + "/m.db",
                          "--http", "", "--auth-tokens", path});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("0644"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("listening on"), std::string::npos) << r.output;

  WriteFile(path, TokenFileText(), 0640);  // group-readable is refused too
  r = RunToEnd({MADAMD_PATH, "--listen", "127.0.0.1:0", "--db", dir.path() + "/m.db", "--http", "",
                "--auth-tokens", path});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("0640"), std::string::npos) << r.output;
}

TEST(SecurityStartupTest, MalformedTokenLineNamesFileAndLineButNotTheToken) {
  TempDir dir;
  const std::string path = dir.path() + "/tokens";
  const std::string secret = "s3cr3t-never-echoed-42";
  WriteFile(path, std::string(kAdminToken) + " admin\n# comment\n" + secret + " superuser\n");
  RunResult r = RunToEnd({MADAMD_PATH, "--listen", "127.0.0.1:0", "--db", dir.path() + "/m.db",
                          "--http", "", "--auth-tokens", path});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(path + ":3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("superuser"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(secret), std::string::npos) << r.output;

  WriteFile(path, secret + "\n");
  r = RunToEnd({MADAMD_PATH, "--listen", "127.0.0.1:0", "--db", dir.path() + "/m.db", "--http", "",
                "--auth-tokens", path});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(path + ":1"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(secret), std::string::npos) << r.output;
}

// Every method of both services has a role: a method added to a .proto and
// not to server/auth.cc would be refused for every token.
TEST(AuthPolicyTest, EveryProtoMethodHasARole) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  int methods = 0;
  for (const char* name : {"madam.v1.Coordinator", "madam.v1.WorkerApi"}) {
    const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string full = "/" + service->full_name() + "/" + service->method(i)->name();
      EXPECT_TRUE(server::RequiredRole(full).has_value()) << full << " has no role in server/auth.cc";
      ++methods;
    }
  }
  EXPECT_GE(methods, 16);
  EXPECT_FALSE(server::RequiredRole("/madam.v1.Coordinator/DropDatabase").has_value());
  EXPECT_FALSE(server::RequiredRole("/grpc.health.v1.Health/Check").has_value());
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_.path() + "/tokens", TokenFileText());
    server_ = StartServer(dir_.path() + "/madam.db", {"--auth-tokens", dir_.path() + "/tokens"});
    ASSERT_FALSE(server_.address.empty());
    auto channel = grpc::CreateChannel(server_.address, grpc::InsecureChannelCredentials());
    client_ = v1::Coordinator::NewStub(channel);
    worker_ = v1::WorkerApi::NewStub(channel);
  }

  grpc::Status List(const std::string& token) {
    grpc::ClientContext ctx;
    Prepare(ctx, token);
    v1::ListSweepsResponse resp;
    return client_->ListSweeps(&ctx, v1::ListSweepsRequest(), &resp);
  }

  grpc::Status Submit(const std::string& token, std::string* sweep_id = nullptr) {
    grpc::ClientContext ctx;
    Prepare(ctx, token);
    v1::SubmitSweepRequest req;
    req.set_file_name("smoke.yaml");
    req.set_spec_text(SmokeSweep());
    v1::SubmitSweepResponse resp;
    grpc::Status s = client_->SubmitSweep(&ctx, req, &resp);
    if (sweep_id != nullptr) *sweep_id = resp.sweep_id();
    return s;
  }

  grpc::Status Cancel(const std::string& token, const std::string& sweep_id) {
    grpc::ClientContext ctx;
    Prepare(ctx, token);
    v1::CancelSweepRequest req;
    req.set_sweep_id(sweep_id);
    v1::CancelSweepResponse resp;
    return client_->CancelSweep(&ctx, req, &resp);
  }

  grpc::Status Register(const std::string& token, std::string* worker_id = nullptr) {
    grpc::ClientContext ctx;
    Prepare(ctx, token);
    v1::RegisterWorkerRequest req;
    req.set_name("security-test");
    req.set_device("cpu");
    v1::RegisterWorkerResponse resp;
    grpc::Status s = worker_->RegisterWorker(&ctx, req, &resp);
    if (worker_id != nullptr) *worker_id = resp.worker_id();
    return s;
  }

  TempDir dir_;
  Server server_;
  std::unique_ptr<v1::Coordinator::Stub> client_;
  std::unique_ptr<v1::WorkerApi::Stub> worker_;
};

TEST_F(AuthTest, MissingOrBadTokenIsUnauthenticated) {
  EXPECT_EQ(List("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(List("not-a-token").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A token one byte off, and a known token with the wrong scheme.
  EXPECT_EQ(List(std::string(kAdminToken) + "x").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", std::string("Basic ") + kAdminToken);
  v1::ListSweepsResponse resp;
  grpc::Status s = client_->ListSweeps(&ctx, v1::ListSweepsRequest(), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Register("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthTest, RolesDecideWhoMayCallWhat) {
  // Admin submits; reader lists and shows; neither reader nor worker may
  // submit or cancel.
  std::string sweep_id;
  ASSERT_TRUE(Submit(kAdminToken, &sweep_id).ok());
  ASSERT_FALSE(sweep_id.empty());
  EXPECT_TRUE(List(kReaderToken).ok());
  EXPECT_TRUE(List(kAdminToken).ok());
  {
    grpc::ClientContext ctx;
    Prepare(ctx, kReaderToken);
    v1::GetSweepRequest req;
    req.set_sweep_id(sweep_id);
    v1::Sweep sweep;
    EXPECT_TRUE(client_->GetSweep(&ctx, req, &sweep).ok());
  }

  grpc::Status s = Submit(kWorkerToken);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("admin"), std::string::npos) << s.error_message();
  EXPECT_EQ(s.error_message().find(kWorkerToken), std::string::npos);
  EXPECT_EQ(Cancel(kWorkerToken, sweep_id).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  s = Cancel(kReaderToken, sweep_id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("needs the admin role"), std::string::npos) << s.error_message();
  EXPECT_EQ(Submit(kReaderToken).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(List(kWorkerToken).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Workers register and take leases; readers may not; admins may.
  std::string worker_id;
  ASSERT_TRUE(Register(kWorkerToken, &worker_id).ok());
  {
    grpc::ClientContext ctx;
    Prepare(ctx, kWorkerToken);
    v1::AcquireRunRequest req;
    req.set_worker_id(worker_id);
    req.set_device("cpu");
    v1::AcquireRunResponse resp;
    s = worker_->AcquireRun(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(resp.has_run());
  }
  s = Register(kReaderToken);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("needs the worker role"), std::string::npos) << s.error_message();
  EXPECT_TRUE(Register(kAdminToken).ok());
  {
    // ReportMetrics is a callback method: the check covers it too.
    grpc::ClientContext ctx;
    Prepare(ctx, kReaderToken);
    v1::ReportMetricsResponse resp;
    s = worker_->ReportMetrics(&ctx, v1::ReportMetricsRequest(), &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  }
  EXPECT_TRUE(Cancel(kAdminToken, sweep_id).ok());

  // No token ever reaches madamd's output, though denials are logged.
  const std::string output = StopServer(server_);
  EXPECT_NE(output.find("denied /madam.v1.Coordinator/SubmitSweep"), std::string::npos) << output;
  for (const char* token : {kAdminToken, kReaderToken, kWorkerToken}) {
    EXPECT_EQ(output.find(token), std::string::npos) << "token in madamd output:\n" << output;
  }
}

TEST_F(AuthTest, MadamctlWithTokenWorksEndToEnd) {
  const std::string smoke = std::string(MADAM_SOURCE_DIR) + "/sweeps/smoke.yaml";
  RunResult submit = RunToEnd({MADAMCTL_PATH, "--coordinator", server_.address, "--token", kAdminToken,
                               "--json", "sweep", "submit", smoke});
  ASSERT_EQ(submit.exit_code, 0) << submit.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(submit.output, m, std::regex(R"re("id"\s*:\s*"([^"]+)")re"))) << submit.output;
  const std::string id = m[1];

  RunResult show = RunToEnd({MADAMCTL_PATH, "--coordinator", server_.address, "--token", kReaderToken,
                             "sweep", "show", id});
  EXPECT_EQ(show.exit_code, 0) << show.output;
  EXPECT_NE(show.output.find(id), std::string::npos) << show.output;

  RunResult denied = RunToEnd({MADAMCTL_PATH, "--coordinator", server_.address, "sweep", "list"});
  EXPECT_EQ(denied.exit_code, 1) << denied.output;
  EXPECT_NE(denied.output.find("UNAUTHENTICATED"), std::string::npos) << denied.output;

  RunResult cancel = RunToEnd({MADAMCTL_PATH, "--coordinator", server_.address, "--token", kReaderToken,
                               "sweep", "cancel", id});
  EXPECT_EQ(cancel.exit_code, 1) << cancel.output;
  EXPECT_NE(cancel.output.find("PERMISSION_DENIED"), std::string::npos) << cancel.output;
  EXPECT_EQ(cancel.output.find(kReaderToken), std::string::npos) << cancel.output;
}

// ----------------------------------------------------------------- TLS ----

// A CA, a server certificate for 127.0.0.1/localhost, a client certificate,
// and an unrelated CA, made once per test suite with openssl.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new TempDir();
    const std::string d = certs_->path();
    const std::string script =
        "set -e\ncd '" + d + "'\n"
        "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\" 2>/dev/null; }\n"
        "ca() { key $1.key; openssl req -x509 -new -key $1.key -out $1.pem -days 2 -subj \"/CN=$1\"; }\n"
        "leaf() {  # name ca extensions\n"
        "  key $1.key\n"
        "  openssl req -new -key $1.key -out $1.csr -subj \"/CN=$1\"\n"
        "  printf '%s\\n' \"$3\" > $1.ext\n"
        "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem "
        "-days 2 -extfile $1.ext 2>/dev/null\n"
        "}\n"
        "ca ca\nca other-ca\n"
        "leaf server ca 'subjectAltName=IP:127.0.0.1,DNS:localhost'\n"
        "leaf client ca 'extendedKeyUsage=clientAuth'\n"
        "leaf rogue-client other-ca 'extendedKeyUsage=clientAuth'\n";
    WriteFile(d + "/make.sh", script, 0700);
    const int rc = std::system(("/bin/sh " + d + "/make.sh").c_str());
    ASSERT_EQ(rc, 0) << "openssl failed; run deploy/install-deps.sh (needs the openssl package)";
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }

  static std::string Cert(const std::string& name) { return certs_->path() + "/" + name; }

  // A stub over TLS trusting `ca` (empty: plaintext), presenting `client`'s
  // certificate when named.
  std::unique_ptr<v1::Coordinator::Stub> Stub(const std::string& address, const std::string& ca,
                                              const std::string& client = "") {
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (!ca.empty()) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = ReadFile(Cert(ca + ".pem"));
      if (!client.empty()) {
        ssl.pem_cert_chain = ReadFile(Cert(client + ".pem"));
        ssl.pem_private_key = ReadFile(Cert(client + ".key"));
      }
      creds = grpc::SslCredentials(ssl);
    }
    return v1::Coordinator::NewStub(grpc::CreateChannel(address, creds));
  }

  static grpc::Status List(v1::Coordinator::Stub& stub, const std::string& token = "") {
    grpc::ClientContext ctx;
    Prepare(ctx, token, seconds(5));
    v1::ListSweepsResponse resp;
    return stub.ListSweeps(&ctx, v1::ListSweepsRequest(), &resp);
  }

  static TempDir* certs_;
  TempDir dir_;
};
TempDir* TlsTest::certs_ = nullptr;

TEST_F(TlsTest, TlsServerAcceptsOnlyClientsThatTrustIt) {
  Server s = StartServer(dir_.path() + "/m.db",
                         {"--tls-cert", Cert("server.pem"), "--tls-key", Cert("server.key")});
  ASSERT_FALSE(s.address.empty());
  EXPECT_TRUE(List(*Stub(s.address, "ca")).ok());
  EXPECT_FALSE(List(*Stub(s.address, "")).ok()) << "plaintext client got through";
  EXPECT_FALSE(List(*Stub(s.address, "other-ca")).ok()) << "client trusting another CA got through";

  RunResult ok = RunToEnd({MADAMCTL_PATH, "--coordinator", s.address, "--tls-ca", Cert("ca.pem"),
                           "sweep", "list"});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  RunResult plain = RunToEnd({MADAMCTL_PATH, "--coordinator", s.address, "sweep", "list"});
  EXPECT_EQ(plain.exit_code, 1) << plain.output;
  RunResult wrong = RunToEnd({MADAMCTL_PATH, "--coordinator", s.address, "--tls-ca",
                              Cert("other-ca.pem"), "sweep", "list"});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.output;
}

TEST_F(TlsTest, MutualTlsServerRequiresAClientCertificateFromItsCa) {
  WriteFile(dir_.path() + "/tokens", TokenFileText());
  Server s = StartServer(dir_.path() + "/m.db",
                         {"--tls-cert", Cert("server.pem"), "--tls-key", Cert("server.key"),
                          "--tls-client-ca", Cert("ca.pem"), "--auth-tokens", dir_.path() + "/tokens"});
  ASSERT_FALSE(s.address.empty());
  EXPECT_FALSE(List(*Stub(s.address, "ca"), kReaderToken).ok()) << "no client certificate got through";
  EXPECT_FALSE(List(*Stub(s.address, "ca", "rogue-client"), kReaderToken).ok())
      << "a client certificate from another CA got through";
  EXPECT_FALSE(List(*Stub(s.address, ""), kReaderToken).ok()) << "plaintext got through";
  // The right certificate still needs a token: TLS and auth stack.
  auto good = Stub(s.address, "ca", "client");
  EXPECT_TRUE(List(*good, kReaderToken).ok());
  EXPECT_EQ(List(*good, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);

  RunResult ctl = RunToEnd({MADAMCTL_PATH, "--coordinator", s.address, "--token", kReaderToken,
                            "--tls-ca", Cert("ca.pem"), "--tls-cert", Cert("client.pem"), "--tls-key",
                            Cert("client.key"), "sweep", "list"});
  EXPECT_EQ(ctl.exit_code, 0) << ctl.output;
  RunResult no_cert = RunToEnd({MADAMCTL_PATH, "--coordinator", s.address, "--token", kReaderToken,
                                "--tls-ca", Cert("ca.pem"), "sweep", "list"});
  EXPECT_EQ(no_cert.exit_code, 1) << no_cert.output;
  const std::string output = StopServer(s);
  EXPECT_EQ(output.find(kReaderToken), std::string::npos) << output;
}

#ifdef MADAM_WORKER_PATH
// The worker's --tls-* flags: a whole run (register, lease, metrics,
// completion) over mutual TLS with a worker token.
TEST_F(TlsTest, WorkerServesARunOverMutualTls) {
  WriteFile(dir_.path() + "/tokens", TokenFileText());
  Server s = StartServer(dir_.path() + "/m.db",
                         {"--tls-cert", Cert("server.pem"), "--tls-key", Cert("server.key"),
                          "--tls-client-ca", Cert("ca.pem"), "--auth-tokens", dir_.path() + "/tokens"});
  ASSERT_FALSE(s.address.empty());
  RunResult submit = RunToEnd({MADAMCTL_PATH, "--coordinator", s.address, "--token", kAdminToken,
                               "--tls-ca", Cert("ca.pem"), "--tls-cert", Cert("client.pem"), "--tls-key",
                               Cert("client.key"), "sweep", "submit",
                               std::string(MADAM_SOURCE_DIR) + "/sweeps/smoke.yaml"});
  ASSERT_EQ(submit.exit_code, 0) << submit.output;
  RunResult worker = RunToEnd({MADAM_WORKER_PATH, "--coordinator", s.address, "--token", kWorkerToken,
                               "--tls-ca", Cert("ca.pem"), "--tls-cert", Cert("client.pem"), "--tls-key",
                               Cert("client.key"), "--device", "cpu", "--threads", "1", "--max-runs", "1",
                               "--checkpoint-dir", dir_.path() + "/checkpoints"},
                              seconds(120));
  EXPECT_EQ(worker.exit_code, 0) << worker.output;
  EXPECT_NE(worker.output.find("SUCCEEDED"), std::string::npos) << worker.output;
  EXPECT_EQ(worker.output.find(kWorkerToken), std::string::npos) << worker.output;

  RunResult missing = RunToEnd({MADAM_WORKER_PATH, "--coordinator", s.address, "--tls-ca",
                                dir_.path() + "/none.pem", "--max-runs", "1"});
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("--tls-ca " + dir_.path() + "/none.pem"), std::string::npos)
      << missing.output;
}
#endif

TEST_F(TlsTest, UnreadableCertificateFilesAreNamedAtStartup) {
  const std::string missing = dir_.path() + "/no-such.pem";
  RunResult r = RunToEnd({MADAMD_PATH, "--listen", "127.0.0.1:0", "--db", dir_.path() + "/m.db",
                          "--http", "", "--tls-cert", missing, "--tls-key", Cert("server.key")});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--tls-cert " + missing), std::string::npos) << r.output;

  r = RunToEnd({MADAMD_PATH, "--listen", "127.0.0.1:0", "--db", dir_.path() + "/m.db", "--http", "",
                "--tls-cert", Cert("server.pem")});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--tls-cert needs --tls-key"), std::string::npos) << r.output;

  r = RunToEnd({MADAMCTL_PATH, "--coordinator", "127.0.0.1:1", "--tls-ca", missing, "sweep", "list"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--tls-ca " + missing), std::string::npos) << r.output;
}

// -------------------------------------------------------------- limits ----

TEST(LimitsTest, OversizedMessageIsResourceExhausted) {
  TempDir dir;
  Server s = StartServer(dir.path() + "/m.db", {});
  ASSERT_FALSE(s.address.empty());
  auto stub = v1::Coordinator::NewStub(grpc::CreateChannel(s.address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  Prepare(ctx, "", seconds(30));
  v1::SubmitSweepRequest req;
  req.set_file_name("huge.yaml");
  req.set_spec_text(std::string((16 << 20) + 1024, '#'));
  v1::SubmitSweepResponse resp;
  grpc::Status status = stub->SubmitSweep(&ctx, req, &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  // The server is still fine.
  grpc::ClientContext ctx2;
  Prepare(ctx2, "");
  v1::ListSweepsResponse list;
  EXPECT_TRUE(stub->ListSweeps(&ctx2, v1::ListSweepsRequest(), &list).ok());
}

long RssKiB(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

int OpenFds(pid_t pid) {
  int n = 0;
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (d == nullptr) return -1;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n - 2;
}

// Opens `count` channels, each on its own connection (a local subchannel
// pool stops gRPC from sharing one), and makes one cheap call on each.
std::vector<std::shared_ptr<grpc::Channel>> OpenIdleConnections(const std::string& address, int count) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    auto stub = v1::Coordinator::NewStub(channel);
    grpc::ClientContext ctx;
    Prepare(ctx, "", seconds(20));
    v1::ListWorkersResponse resp;
    grpc::Status s = stub->ListWorkers(&ctx, v1::ListWorkersRequest(), &resp);
    EXPECT_TRUE(s.ok()) << "connection " << i << ": " << s.error_message();
    if (!s.ok()) break;
    channels.push_back(std::move(channel));
  }
  return channels;
}

TEST(LimitsTest, ThousandIdleConnectionsDoNotGrowMemoryWithoutBound) {
  // 1,000 channels need 1,000 descriptors here and in madamd (which
  // inherits the limit).
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  }
  if (limit.rlim_cur < 2200) GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << limit.rlim_max << " < 2200";

  constexpr int kConnections = 1000;
  TempDir dir;
  Server s = StartServer(dir.path() + "/m.db", {});
  ASSERT_FALSE(s.address.empty());
  const pid_t pid = s.process->pid();
  // The first calls warm up madamd's thread pool and allocator.
  OpenIdleConnections(s.address, 20);
  std::this_thread::sleep_for(milliseconds(500));
  const long before = RssKiB(pid);
  const int fds_before = OpenFds(pid);

  long with[2] = {0, 0}, after[2] = {0, 0};
  for (int round = 0; round < 2; ++round) {
    auto channels = OpenIdleConnections(s.address, kConnections);
    ASSERT_EQ(channels.size(), static_cast<size_t>(kConnections));
    std::this_thread::sleep_for(seconds(1));  // idle
    EXPECT_GE(OpenFds(pid), fds_before + kConnections - 10) << "connections were shared, not separate";
    with[round] = RssKiB(pid);
    channels.clear();  // closes the connections
    for (int i = 0; i < 100 && OpenFds(pid) > fds_before + 20; ++i) {
      std::this_thread::sleep_for(milliseconds(100));
    }
    EXPECT_LE(OpenFds(pid), fds_before + 20) << "madamd kept closed connections open";
    std::this_thread::sleep_for(milliseconds(500));
    after[round] = RssKiB(pid);
  }
  std::printf("madamd RSS (KiB): before %ld; round 1: with %d idle connections %ld (+%ld), after "
              "closing %ld; round 2: with %ld, after %ld\n",
              before, kConnections, with[0], with[0] - before, after[0], with[1], after[1]);
  RecordProperty("rss_before_kib", std::to_string(before));
  RecordProperty("rss_with_idle_kib", std::to_string(with[0]));
  RecordProperty("rss_after_kib", std::to_string(after[0]));
  RecordProperty("rss_after_second_round_kib", std::to_string(after[1]));
  EXPECT_LT(with[0] - before, 200 * 1024) << "1,000 idle connections cost more than 200 MiB";
  EXPECT_LE(after[0], with[0] + with[0] / 20) << "memory kept growing after the connections closed";
  // glibc keeps freed pages, so RSS need not fall back to `before`; what must
  // hold is that the memory is reused: a second round of 1,000 connections
  // stays within 20% of the first.
  EXPECT_LE(with[1], with[0] + with[0] / 5);
  EXPECT_LE(after[1], after[0] + after[0] / 5);
}

}  // namespace
}  // namespace madam
