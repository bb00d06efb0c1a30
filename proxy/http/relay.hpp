#pragma once
// Between session.cpp (a connection's life) and relay.cpp (a request relayed to the upstream).
#include <memory>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "proxy/http/internal.hpp"

namespace pitstop::http {

using HeadParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// Relays the request whose head `head` holds (none of its body read yet; what arrived of it is
// in `buffer`) to the listener's upstream, and the answer back. Returns whether the client's
// connection may carry another request.
boost::asio::awaitable<bool> relay(Listener::Impl& L, std::shared_ptr<Listener::Session> s, boost::beast::flat_buffer& buffer,
                                   HeadParser& head, Passage& passage, std::size_t served);

// Answers, then closes the connection once the client has had time to read the answer.
boost::asio::awaitable<void> send_and_close(std::shared_ptr<Listener::Session> s, const Settings& cfg, Response r);

}  // namespace pitstop::http
