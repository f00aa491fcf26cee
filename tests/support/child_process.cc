#include "tests/support/child_process.h"

#include <algorithm>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace madam::testing {

ChildProcess::ChildProcess(std::vector<std::string> argv) {
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(out[1]);
  reader_ = std::thread([this, fd = out[0]] { ReadLoop(fd); });
}

ChildProcess::~ChildProcess() {
  if (!exit_code_) {
    kill(pid_, SIGCONT);  // a stopped child cannot die of SIGKILL until resumed on some kernels
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (reader_.joinable()) reader_.join();
}

void ChildProcess::Signal(int signal) const { kill(pid_, signal); }

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void ChildProcess::ReadLoop(int fd) {
  std::string pending;
  char buf[4096];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    size_t pos;
    while ((pos = pending.find('\n')) != std::string::npos) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back(pending.substr(0, pos));
      pending.erase(0, pos + 1);
      cv_.notify_all();
    }
  }
  close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  if (!pending.empty()) lines_.push_back(pending);
  eof_ = true;
  cv_.notify_all();
}

std::optional<std::vector<std::string>> ChildProcess::WaitForLine(
    const std::regex& pattern, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  size_t checked = 0;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    for (; checked < lines_.size(); ++checked) {
      std::smatch m;
      if (std::regex_search(lines_[checked], m, pattern)) {
        return std::vector<std::string>(m.begin(), m.end());
      }
    }
    if (eof_) return std::nullopt;
    if (cv_.wait_until(lock, until) == std::cv_status::timeout && checked == lines_.size()) {
      return std::nullopt;
    }
  }
}

std::vector<std::string> ChildProcess::Lines() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lines_;
}

Madamd StartMadamd(const std::string& madamd_path, const std::string& db_path,
                   const std::vector<std::string>& extra_flags, const std::string& listen) {
  std::vector<std::string> argv = {madamd_path, "--listen", listen, "--db", db_path};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  // madamd's HTTP default is the fixed port 7071: tests running in parallel
  // (and other madamds on the machine) would collide, so pick a free one.
  if (std::find(extra_flags.begin(), extra_flags.end(), "--http") == extra_flags.end()) {
    argv.insert(argv.end(), {"--http", "127.0.0.1:0"});
  }
  Madamd m;
  m.process = std::make_unique<ChildProcess>(argv);
  auto line = m.process->WaitForLine(std::regex(R"(listening on (\S+:\d+))"),
                                     std::chrono::seconds(20));
  if (!line) throw std::runtime_error("madamd did not start (no 'listening on' line)");
  m.address = (*line)[1];
  return m;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "madam-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace madam::testing
