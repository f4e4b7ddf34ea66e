// gRPC runs each callback of a reactor after the operation that led to it (StartRead, StartWrite,
// Finish, or returning the reactor to gRPC) and one at a time, but it orders them through
// synchronisation inside itself. gRPC as the distribution ships it is built without
// ThreadSanitizer, which therefore cannot see that order and would report the reactor's own fields
// as racing. These calls state the order for it; in every other build they are nothing.
//   handed_over(this)  before each Start*/Finish and at the end of each callback
//   taken_back(this)   at the start of each callback
// OrderedReactor does the first for Start*/Finish of a server reactor; callbacks hold InCallback.
#pragma once

#include <grpcpp/support/status.h>

#include <utility>

#if defined(__SANITIZE_THREAD__)
#define EDGEINF_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EDGEINF_TSAN 1
#endif
#endif

#ifdef EDGEINF_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace edgeinf::server {

#ifdef EDGEINF_TSAN
inline void handed_over(void* reactor) { __tsan_release(reactor); }
inline void taken_back(void* reactor) { __tsan_acquire(reactor); }
#else
inline void handed_over(void*) {}
inline void taken_back(void*) {}
#endif

// For the length of a callback: taken back on entry, handed over on exit.
class InCallback {
 public:
  explicit InCallback(void* reactor) : reactor_(reactor) { taken_back(reactor_); }
  ~InCallback() { handed_over(reactor_); }
  InCallback(const InCallback&) = delete;
  InCallback& operator=(const InCallback&) = delete;

 private:
  void* reactor_;
};

// A server reactor (grpc::ServerReadReactor or ServerWriteReactor) whose StartRead, StartWrite and
// Finish hand it over first, and which deletes itself once gRPC is done with it.
template <class Reactor>
class OrderedReactor : public Reactor {
 public:
  void OnDone() override {
    taken_back(this);
    delete this;
  }

 protected:
  template <class Message>
  void StartRead(Message* m) {
    handed_over(this);
    Reactor::StartRead(m);
  }
  template <class Message>
  void StartWrite(const Message* m) {
    handed_over(this);
    Reactor::StartWrite(m);
  }
  void Finish(grpc::Status status) {
    handed_over(this);
    Reactor::Finish(std::move(status));
  }
};

}  // namespace edgeinf::server
