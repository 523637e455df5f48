// ConnectionWatch (connection.hpp): the socket found through /proc/self/fd.
#include "connection.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <utility>

namespace assistgen::server {

namespace {

// Numeric host and port of a socket address, as cpp-httplib formats them
// (getnameinfo with NI_NUMERICHOST).
bool describe(const sockaddr_storage& a, socklen_t len, std::string& host, int& port) {
  char buf[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, buf, sizeof(buf), nullptr, 0,
                  NI_NUMERICHOST) != 0)
    return false;
  host = buf;
  if (a.ss_family == AF_INET)
    port = ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  else if (a.ss_family == AF_INET6)
    port = ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  else
    return false;
  return true;
}

}  // namespace

ConnectionWatch::ConnectionWatch(std::string local_addr, int local_port, std::string remote_addr,
                                 int remote_port)
    : local_addr_(std::move(local_addr)),
      remote_addr_(std::move(remote_addr)),
      local_port_(local_port),
      remote_port_(remote_port) {}

bool ConnectionWatch::closed() {
  if (!searched_) {
    searched_ = true;
    // One scan at a time: a scan's own directory stream is an fd in
    // /proc/self/fd, which a concurrent scan would fstat while it is closed
    // (ThreadSanitizer reported it with concurrent non-streamed requests).
    static std::mutex scanning;
    std::lock_guard lock(scanning);
    std::error_code ec;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      int fd = -1;
      if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc()) continue;
      struct stat st {};
      if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      sockaddr_storage local{}, peer{};
      socklen_t llen = sizeof(local), plen = sizeof(peer);
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) != 0 ||
          getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0)
        continue;
      std::string lhost, phost;
      int lport = -1, pport = -1;
      if (!describe(local, llen, lhost, lport) || !describe(peer, plen, phost, pport)) continue;
      if (lport == local_port_ && pport == remote_port_ && lhost == local_addr_ &&
          phost == remote_addr_) {
        fd_ = fd;
        break;
      }
    }
  }
  if (fd_ < 0) return false;
  char c;
  const ssize_t n = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;  // end of file: the client closed
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

}  // namespace assistgen::server
