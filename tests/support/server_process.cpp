#include "support/server_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>

extern char** environ;  // NOLINT

namespace cw::testing {
namespace {

namespace fs = std::filesystem;

struct Spawned {
  pid_t pid;
  int out;
  int err;
};

Spawned Spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    if (env.count(name) == 0) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> argv;
  std::string bin = CarewireBinary();
  argv.push_back(bin.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    const int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, STDIN_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  return {pid, out[0], err[0]};
}

// Reads what is available from fd into buf; false at EOF.
bool Drain(int fd, std::string& buf) {
  char chunk[8192];
  for (;;) {
    const ssize_t n = read(fd, chunk, sizeof chunk);
    if (n > 0) {
      buf.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) return false;
    return errno == EAGAIN || errno == EINTR;
  }
}

}  // namespace

std::string CarewireBinary() {
  const char* bin = std::getenv("CW_TEST_CAREWIRE_BINARY");  // NOLINT
  if (bin == nullptr) throw std::runtime_error("CW_TEST_CAREWIRE_BINARY is not set");
  return bin;
}

TempDir::TempDir() {
  std::random_device rd;
  path_ = fs::temp_directory_path() /
          ("carewire-test-" + std::to_string(getpid()) + "-" + std::to_string(rd()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

ProcessResult RunCarewire(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env) {
  Spawned s = Spawn(args, env);
  ProcessResult r;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    pollfd fds[2] = {{s.out, POLLIN, 0}, {s.err, POLLIN, 0}};
    poll(fds, 2, 1000);
    if (out_open) out_open = Drain(s.out, r.out);
    if (err_open) err_open = Drain(s.err, r.err);
  }
  close(s.out);
  close(s.err);
  int status = 0;
  waitpid(s.pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

ServerProcess::ServerProcess(Options options) {
  if (options.data_dir.empty()) {
    owned_dir_ = std::make_unique<TempDir>();
    data_dir_ = owned_dir_->path() / "data";
  } else {
    data_dir_ = options.data_dir;
  }
  std::vector<std::string> args = {"serve", "--data-dir", data_dir_.string(), "--listen",
                                   "127.0.0.1:0"};
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  Spawned s = Spawn(args, options.env);
  pid_ = s.pid;
  out_fd_ = s.out;
  err_fd_ = s.err;
  if (pipe2(wake_, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  reader_ = std::thread([this] { ReadOutput(); });
  const std::string listening = "listening on https://127.0.0.1:";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const std::string out = Stdout();
    const std::size_t at = out.find(listening);
    const std::size_t eol = at == std::string::npos ? at : out.find('\n', at);
    if (eol != std::string::npos) {
      port_ = static_cast<std::uint16_t>(std::stoi(out.substr(at + listening.size())));
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      throw std::runtime_error("carewire exited before listening; stderr: " + Stderr());
    }
  }
  throw std::runtime_error("carewire did not start listening within 60 s");
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && exit_status_ == -2) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (reader_.joinable()) {
    const char stop = 1;
    (void)!write(wake_[1], &stop, 1);
    reader_.join();
  }
  for (int fd : {out_fd_, err_fd_, wake_[0], wake_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void ServerProcess::ReadOutput() {
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    pollfd fds[3] = {{out_open ? out_fd_ : -1, POLLIN, 0},
                     {err_open ? err_fd_ : -1, POLLIN, 0},
                     {wake_[0], POLLIN, 0}};
    poll(fds, 3, 1000);
    if (fds[2].revents) return;
    std::string out, err;
    if (out_open) out_open = Drain(out_fd_, out);
    if (err_open) err_open = Drain(err_fd_, err);
    std::lock_guard lock(mu_);
    out_ += out;
    err_ += err;
  }
}

std::string ServerProcess::Snapshot(const std::string& which) {
  std::lock_guard lock(mu_);
  return which == "out" ? out_ : err_;
}

int ServerProcess::Stop(int signal, std::chrono::milliseconds timeout) {
  if (exit_status_ != -2) return exit_status_;
  kill(pid_, signal);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The reader sees EOF on both pipes once the process is gone.
  if (reader_.joinable()) reader_.join();
  exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return exit_status_;
}

std::string ServerProcess::Stdout() { return Snapshot("out"); }

std::string ServerProcess::Stderr() { return Snapshot("err"); }

}  // namespace cw::testing
