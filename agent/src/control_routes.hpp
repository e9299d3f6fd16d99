#pragma once
// The status page's login and agent-wide actions, as a plain function of the request (tested
// without sockets). status_routes delegates to it first.
//
//   POST /api/v1/login    {"user":..., "password":...} (Content-Type: application/json)
//                         -> 200 {"user","role","csrf"} + Set-Cookie semilab_session=...;
//                            HttpOnly; SameSite=Strict; Path=/ (; Secure under HTTPS)
//                         401 wrong user or password, 429 locked (user_store::kMaxFailures)
//   POST /api/v1/logout   -> 204, the session ends, the cookie is cleared
//   GET  /api/v1/session  -> 200 {"user","role","csrf"} for a valid cookie (a reloaded page
//                            keeps its login), else 401
//   GET  /api/v1/acquisition          -> {"acquisition":"running"|"paused"}
//   POST /api/v1/acquisition/pause    engineer: stop polling every instrument
//   POST /api/v1/acquisition/resume   engineer: start them again
//   POST /api/v1/outbox/flush         technician: wake the sync engine now
//
// The login needs a JSON body: a cross-site HTML form cannot send one without a CORS preflight
// (which this server never grants), so a login cannot be forced either (login CSRF). Login runs
// scrypt: http_status.cpp runs it on a worker thread, never on the io thread.
#include <boost/json/object.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "status_routes.hpp"
#include "users.hpp"

namespace semilab::agent {

class control_routes {
 public:
  // `control` runs an agent_control request (pause, resume, flush) and returns its reply; it is
  // called on the io thread (http_status.cpp answers everything but logins there); null = 503.
  using control_fn = std::function<boost::json::value(boost::json::object)>;
  // `paused` answers GET /api/v1/acquisition on the io thread (cheap, thread-safe).
  control_routes(std::shared_ptr<auth> a, control_fn control, std::function<bool()> paused)
      : auth_(std::move(a)), control_(std::move(control)), paused_(std::move(paused)) {}

  // nullopt: not one of these routes (`target` without its query).
  std::optional<http_reply> handle(const http_request_view& req, std::string_view target) const;
  std::optional<http_reply> refuse_unless(const http_request_view& req, user_role min) const;

 private:
  http_reply login(const http_request_view& req) const;
  http_reply act(const http_request_view& req, const char* cmd, user_role min) const;

  std::shared_ptr<auth> auth_;
  control_fn control_;
  std::function<bool()> paused_;
};

}  // namespace semilab::agent
