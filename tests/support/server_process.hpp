#pragma once

// Starts the real carewire binary for a test, the way an operator would:
// in a fresh temporary data directory, on 127.0.0.1:0, reading the port from
// the "listening on https://HOST:PORT" line on its standard output.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cw::testing {

// Path of the carewire binary under test (from the CW_TEST_CAREWIRE_BINARY environment
// variable CTest sets).
std::string CarewireBinary();

// A temporary directory removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs carewire with `args` to completion; for the command-line tools.
ProcessResult RunCarewire(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env = {});

class ServerProcess {
 public:
  struct Options {
    std::vector<std::string> extra_args;
    std::map<std::string, std::string> env;  // added to the test's own environment
    std::string data_dir;                    // empty: a new temporary directory
  };

  explicit ServerProcess(Options options);
  ServerProcess() : ServerProcess(Options{}) {}
  ~ServerProcess();  // kills the server if it still runs

  std::uint16_t port() const { return port_; }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  pid_t pid() const { return pid_; }

  // Sends `signal` and waits for the exit; returns the exit status (or -1
  // if it was killed by a signal) and collects the rest of its output.
  int Stop(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Everything the server wrote so far (stderr holds the JSON log lines).
  std::string Stdout();
  std::string Stderr();

 private:
  // Reads the server's output as it comes, on a thread of its own: a server
  // whose log pipe is full would block on its next log line.
  void ReadOutput();
  std::string Snapshot(const std::string& which);

  std::unique_ptr<TempDir> owned_dir_;
  std::filesystem::path data_dir_;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::mutex mu_;
  std::string out_;         // guarded by mu_
  std::string err_;         // guarded by mu_
  int wake_[2] = {-1, -1};  // a pipe that tells the reader thread to stop
  std::thread reader_;
  std::uint16_t port_ = 0;
  int exit_status_ = -2;
};

}  // namespace cw::testing
