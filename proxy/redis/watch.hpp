#pragma once
// Internal to proxy/redis: hiredis's event hooks on an Asio descriptor, shared by the command
// client and the subscriber.
#include <hiredis/async.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <memory>

namespace pitstop::redis::detail {

// Connects hiredis's event hooks to an Asio descriptor. The descriptor never owns the fd: hiredis
// closes it, so cleanup releases it. Handlers hold a reference, so the watch outlives hiredis's
// context until the last queued completion has seen `gone`.
struct Watch : std::enable_shared_from_this<Watch> {
  Watch(boost::asio::io_context& ioc, redisAsyncContext* ac) : sd(ioc, ac->c.fd), ac(ac) {}
  boost::asio::posix::stream_descriptor sd;
  redisAsyncContext* ac;
  std::shared_ptr<Watch> keep_alive;  // released by cleanup
  bool reading = false, writing = false, read_armed = false, write_armed = false, gone = false;

  void arm_read() {
    if (read_armed || gone || !reading) return;
    read_armed = true;
    sd.async_wait(boost::asio::posix::descriptor_base::wait_read, [self = shared_from_this()](boost::system::error_code ec) {
      self->read_armed = false;
      if (self->gone || ec) return;
      if (self->reading) redisAsyncHandleRead(self->ac);
      if (!self->gone) self->arm_read();
    });
  }

  void arm_write() {
    if (write_armed || gone || !writing) return;
    write_armed = true;
    sd.async_wait(boost::asio::posix::descriptor_base::wait_write, [self = shared_from_this()](boost::system::error_code ec) {
      self->write_armed = false;
      if (self->gone || ec) return;
      if (self->writing) redisAsyncHandleWrite(self->ac);
      if (!self->gone) self->arm_write();
    });
  }

  static void add_read(void* p) {
    auto* w = static_cast<Watch*>(p);
    w->reading = true;
    w->arm_read();
  }
  static void del_read(void* p) { static_cast<Watch*>(p)->reading = false; }
  static void add_write(void* p) {
    auto* w = static_cast<Watch*>(p);
    w->writing = true;
    w->arm_write();
  }
  static void del_write(void* p) { static_cast<Watch*>(p)->writing = false; }
  static void cleanup(void* p) {
    auto* w = static_cast<Watch*>(p);
    w->gone = true;
    w->reading = w->writing = false;
    w->ac = nullptr;
    w->sd.release();  // aborts pending waits; the fd stays hiredis's
    auto self = std::move(w->keep_alive);  // may destroy *w when this returns
  }
};


// Attaches a new watch to a fresh context (before its connect callback is set: that arms a write).
inline void attach(boost::asio::io_context& ioc, redisAsyncContext* c) {
  auto watch = std::make_shared<Watch>(ioc, c);
  watch->keep_alive = watch;
  c->ev.data = watch.get();
  c->ev.addRead = &Watch::add_read;
  c->ev.delRead = &Watch::del_read;
  c->ev.addWrite = &Watch::add_write;
  c->ev.delWrite = &Watch::del_write;
  c->ev.cleanup = &Watch::cleanup;
}

}  // namespace pitstop::redis::detail
