// Private to the server: whether the client of a request has closed its
// connection, for handlers that wait without writing (a non-streaming
// completion). cpp-httplib 0.11 (Debian's) gives a handler neither its socket
// nor Request::is_connection_closed, so ConnectionWatch finds the socket by
// the connection's two addresses (Request::local_addr/local_port and
// remote_addr/remote_port; the handler's connection stays open while it
// runs) and peeks at it: end of file or a reset means the client left.
// A client that half-closes its side after sending (shutdown(SHUT_WR)) reads
// as gone too; HTTP clients do not do that while they await a response.
#pragma once

#include <string>

namespace assistgen::server {

/// Watches the connection of one request (see the file comment).
class ConnectionWatch {
 public:
  /// The connection between `local_addr`:`local_port` (the server's side)
  /// and `remote_addr`:`remote_port`, as cpp-httplib reports them.
  ConnectionWatch(std::string local_addr, int local_port, std::string remote_addr,
                  int remote_port);
  /// Whether the client closed (or reset) the connection. The socket is
  /// looked up on the first call; when none matches (e.g. a platform
  /// without /proc), false.
  bool closed();

 private:
  std::string local_addr_, remote_addr_;
  int local_port_, remote_port_;
  int fd_ = -1;
  bool searched_ = false;
};

}  // namespace assistgen::server
