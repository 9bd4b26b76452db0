// Errors: Status/Result at API boundaries, paradit::Error inside.
//
// Inside the engine an error unwinds as a paradit::Error exception carrying a Status (code + message);
// front ends (CLI, server, C API) catch it with paradit::capture() and report the Status. Nothing below the
// command line front end calls abort() or exit(): a bad file or a failed kernel becomes a message, and the
// process keeps serving.
#pragma once

#include <exception>
#include <sstream>
#include <string>
#include <utility>
#include <variant>

namespace paradit {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller asked for something impossible (shape, flag, mesh)
  kNotFound,         // a file, tensor or key is missing
  kIoError,          // the OS refused a read/write/mmap
  kCorruptData,      // a file is truncated, malformed or inconsistent
  kOutOfMemory,      // host or device allocation failed
  kUnavailable,      // no device, no library, peer gone
  kTimeout,          // a collective or request ran past its deadline
  kCancelled,
  kUnimplemented,
  kInternal,         // a bug: an invariant of ours did not hold
};

const char* status_code_name(StatusCode code);

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

class Error : public std::exception {
 public:
  explicit Error(Status status) : status_(std::move(status)), what_(status_.to_string()) {}
  Error(StatusCode code, std::string message) : Error(Status(code, std::move(message))) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  Status status_;
  std::string what_;
};

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT
  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }
  T& value() & { check(); return std::get<T>(v_); }
  T&& value() && { check(); return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  void check() const {
    if (!ok()) throw Error(std::get<Status>(v_));
  }
  std::variant<T, Status> v_;
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// Builds a message from any streamable pieces: PD_THROW(kNotFound, "tensor ", name, " missing in ", file).
#define PD_THROW(code, ...) throw ::paradit::Error(::paradit::StatusCode::code, ::paradit::detail::concat(__VA_ARGS__))

// Precondition on caller input: throws kInvalidArgument with the message when cond is false.
#define PD_REQUIRE(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) PD_THROW(kInvalidArgument, __VA_ARGS__);                       \
  } while (0)

// Invariant of ours: a failure is a bug, reported with where it happened.
#define PD_CHECK(cond, ...)                                                               \
  do {                                                                                    \
    if (!(cond))                                                                          \
      PD_THROW(kInternal, __FILE__, ":", __LINE__, ": check failed: " #cond " ", ##__VA_ARGS__); \
  } while (0)

// Runs fn and turns any exception into a Status (the boundary between engine and front end).
template <typename Fn>
Status capture(Fn&& fn) {
  try {
    fn();
    return Status();
  } catch (const Error& e) {
    return e.status();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "host memory exhausted");
  } catch (const std::exception& e) {
    return Status(StatusCode::kInternal, e.what());
  }
}

}  // namespace paradit
