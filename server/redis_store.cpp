// The redis:// session store. A session is one hash, "edgeinf:s:{key}":
//
//   v         the latest version (decimal)
//   t         the token of the commit that wrote it (a retried commit that landed is recognised)
//   h         the head of its record
//   r:<20-digit version>   the records: the latest full one and every later delta
//
// A commit is one Lua script, so the version check and the write are one atomic step on the
// server. Connections are pooled; every call has a deadline (the socket timeout), after which the
// connection is dropped and the call fails with UNAVAILABLE. A connection found dead (the server
// restarted) is replaced and the call retried once; a timed-out call is not retried.
#include "server/redis_store.h"

#include <hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace edgeinf::server {
namespace {

constexpr const char* kPrefix = "edgeinf:s:";

// ARGV: previous version ("0": the key must not exist), new version, full ("1"/"0"), record field,
// record, head, token. Returns 1 (written, or already written by this token), 0 (another version
// is there), -1 (the key is gone).
constexpr const char* kCommitScript = R"lua(
local cur = redis.call('HGET', KEYS[1], 'v')
if not cur then cur = '0' end
if cur ~= ARGV[1] then
  if cur == ARGV[2] and redis.call('HGET', KEYS[1], 't') == ARGV[7] then return 1 end
  if cur == '0' then return -1 end
  return 0
end
if ARGV[3] == '1' then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(f, 1, 2) == 'r:' then redis.call('HDEL', KEYS[1], f) end
  end
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 't', ARGV[7], 'h', ARGV[6], ARGV[4], ARGV[5])
return 1
)lua";

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c != nullptr) redisFree(c);
  }
};
using Connection = std::unique_ptr<redisContext, ContextDeleter>;

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

std::string record_field(uint64_t v) { return absl::StrFormat("r:%020u", v); }

class RedisStore final : public SessionStore {
 public:
  RedisStore(std::string url, std::string host, int port, int db, int timeout_ms)
      : url_(std::move(url)), host_(std::move(host)), port_(port), db_(db), timeout_ms_(timeout_ms) {}

  // Runs a command (argv form, binary safe) on a pooled connection.
  StatusOr<Reply> command(const std::vector<std::string_view>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (std::string_view a : args) argv.push_back(a.data()), lens.push_back(a.size());
    for (int attempt = 0;; ++attempt) {
      EDGEINF_ASSIGN_OR_RETURN(Connection c, take());
      Reply r(static_cast<redisReply*>(redisCommandArgv(c.get(), int(argv.size()), argv.data(), lens.data())));
      const int call_errno = errno;
      if (r != nullptr) {
        give_back(std::move(c));
        if (r->type == REDIS_REPLY_ERROR) {
          return absl::UnavailableError(absl::StrCat("session store ", url_, ": ", std::string(r->str, r->len)));
        }
        return r;
      }
      // The connection is unusable now. A dead one (EOF, reset: the server restarted) is retried
      // once on a fresh connection; a timeout is not (the caller's deadline is spent).
      const bool timed_out = c->err == REDIS_ERR_IO && (call_errno == EAGAIN || call_errno == EWOULDBLOCK);
      const std::string why = timed_out ? absl::StrCat("no answer within ", timeout_ms_, " ms") : c->errstr;
      if (timed_out || attempt > 0) return absl::UnavailableError(absl::StrCat("session store ", url_, ": ", why));
    }
  }

  Status commit(const std::string& key, const CommitRequest& req) override {
    if (req.record.empty() || req.version == 0) return absl::InvalidArgumentError("session store: empty record");
    const std::string k = kPrefix + key, prev = absl::StrCat(req.version - 1), v = absl::StrCat(req.version);
    const std::string field = record_field(req.version);
    EDGEINF_ASSIGN_OR_RETURN(Reply r, command({"EVAL", kCommitScript, "1", k, prev, v, req.full ? "1" : "0", field,
                                               req.record, req.head, req.token}));
    if (r->type != REDIS_REPLY_INTEGER) return absl::UnavailableError("redis commit: unexpected reply");
    if (r->integer == 1) return absl::OkStatus();
    if (r->integer == -1) return absl::NotFoundError("session store: the session was removed");
    return absl::AbortedError(absl::StrCat("session store: the session is no longer at version ", req.version - 1));
  }

  StatusOr<std::optional<std::vector<StoredRecord>>> read(const std::string& key) override {
    EDGEINF_ASSIGN_OR_RETURN(Reply r, command({"HGETALL", kPrefix + key}));
    if (r->type != REDIS_REPLY_ARRAY) return absl::UnavailableError("redis HGETALL: unexpected reply");
    if (r->elements == 0) return std::optional<std::vector<StoredRecord>>();
    std::vector<StoredRecord> chain;
    uint64_t latest = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
      const std::string_view f(r->element[i]->str, r->element[i]->len);
      const redisReply* val = r->element[i + 1];
      if (f == "v") {
        if (!absl::SimpleAtoi(absl::string_view(val->str, val->len), &latest)) {
          return absl::DataLossError(absl::StrCat("session store: '", key, "' has a bad version"));
        }
      } else if (f.size() == 22 && f.substr(0, 2) == "r:") {
        StoredRecord rec;
        if (!absl::SimpleAtoi(absl::string_view(f.data() + 2, f.size() - 2), &rec.version)) continue;
        rec.bytes.assign(val->str, val->len);
        chain.push_back(std::move(rec));
      }
    }
    std::sort(chain.begin(), chain.end(),
              [](const StoredRecord& a, const StoredRecord& b) { return a.version < b.version; });
    for (size_t i = 0; i < chain.size(); ++i) {
      if (chain[i].version != chain.back().version - (chain.size() - 1 - i)) {
        return absl::DataLossError(absl::StrCat("session store: a version of '", key, "' is missing"));
      }
    }
    if (chain.empty() || chain.back().version != latest) {
      return absl::DataLossError(absl::StrCat("session store: '", key, "' lacks its version ", latest));
    }
    return std::optional<std::vector<StoredRecord>>(std::move(chain));
  }

  StatusOr<std::optional<StoredRecord>> read_head(const std::string& key) override {
    EDGEINF_ASSIGN_OR_RETURN(Reply r, command({"HMGET", kPrefix + key, "v", "h"}));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
      return absl::UnavailableError("redis HMGET: unexpected reply");
    if (r->element[0]->type == REDIS_REPLY_NIL) return std::optional<StoredRecord>();
    StoredRecord head;
    if (!absl::SimpleAtoi(absl::string_view(r->element[0]->str, r->element[0]->len), &head.version) ||
        r->element[1]->type != REDIS_REPLY_STRING) {
      return absl::DataLossError(absl::StrCat("session store: '", key, "' has a bad version or head"));
    }
    head.bytes.assign(r->element[1]->str, r->element[1]->len);
    return std::optional<StoredRecord>(std::move(head));
  }

  Status remove(const std::string& key) override { return command({"DEL", kPrefix + key}).status(); }

  StatusOr<std::vector<std::string>> list(const std::string& prefix) override {
    std::vector<std::string> keys;
    std::string cursor = "0";
    const std::string pattern = absl::StrCat(kPrefix, prefix, "*");
    const size_t skip = std::string(kPrefix).size();
    do {
      EDGEINF_ASSIGN_OR_RETURN(Reply r, command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}));
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return absl::UnavailableError("redis SCAN: bad reply");
      cursor.assign(r->element[0]->str, r->element[0]->len);
      const redisReply* arr = r->element[1];
      for (size_t i = 0; i < arr->elements; ++i)
        keys.emplace_back(arr->element[i]->str + skip, arr->element[i]->len - skip);
    } while (cursor != "0");
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    return keys;
  }

  Status ping() override { return command({"PING"}).status(); }
  int record_copies() const override { return 2; }  // our bytes and hiredis's command or reply
  std::string url() const override { return url_; }

 private:
  // An idle pooled connection, or a new one.
  StatusOr<Connection> take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        Connection c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    const timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
    Connection c(redisConnectWithTimeout(host_.c_str(), port_, tv));
    if (c == nullptr || c->err != 0) {
      return absl::UnavailableError(
          absl::StrCat("session store ", url_, ": ", c != nullptr ? c->errstr : "out of memory"));
    }
    redisSetTimeout(c.get(), tv);
    if (db_ != 0) {
      Reply r(static_cast<redisReply*>(redisCommand(c.get(), "SELECT %d", db_)));
      if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
        return absl::UnavailableError(absl::StrCat("session store ", url_, ": SELECT ", db_, " failed"));
      }
    }
    return c;
  }

  void give_back(Connection c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < 8) idle_.push_back(std::move(c));
  }

  const std::string url_, host_;
  const int port_, db_, timeout_ms_;
  std::mutex mu_;
  std::vector<Connection> idle_;
};

}  // namespace

StatusOr<std::unique_ptr<SessionStore>> open_redis_store(const std::string& url, int timeout_ms) {
  constexpr std::string_view kScheme = "redis://";
  if (url.compare(0, kScheme.size(), kScheme) != 0) return absl::InvalidArgumentError("not a redis:// URL");
  if (timeout_ms <= 0) return absl::InvalidArgumentError("the session store timeout must be positive");
  std::string rest = url.substr(kScheme.size());
  int db = 0;
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    if (!absl::SimpleAtoi(rest.substr(slash + 1), &db) || db < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad database number in '", url, "'"));
    }
    rest = rest.substr(0, slash);
  }
  const size_t colon = rest.rfind(':');
  int port = 6379;
  std::string host = rest;
  if (colon != std::string::npos) {
    host = rest.substr(0, colon);
    if (!absl::SimpleAtoi(rest.substr(colon + 1), &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("bad port in '", url, "'"));
    }
  }
  if (host.empty()) return absl::InvalidArgumentError(absl::StrCat("no host in '", url, "'"));
  auto store = std::make_unique<RedisStore>(url, host, port, db, timeout_ms);
  EDGEINF_RETURN_IF_ERROR(store->ping());
  return std::unique_ptr<SessionStore>(std::move(store));
}

StatusOr<StoreUrl> parse_store_url(const std::string& url) {
  StoreUrl u;
  if (url.compare(0, 6, "dir://") == 0) {
    u.scheme = "dir";
    u.path = url.substr(6);
    if (u.path.empty()) return absl::InvalidArgumentError("dir:// store needs a directory");
    if (u.path[0] != '/') {
      // Relative to the working directory: spelt out, so logs and operators see where it is.
      char cwd[4096];
      if (::getcwd(cwd, sizeof cwd) == nullptr) return absl::InvalidArgumentError("cannot resolve the store directory");
      u.path = absl::StrCat(cwd, "/", u.path);
    }
    while (u.path.size() > 1 && u.path.back() == '/') u.path.pop_back();
    u.url = "dir://" + u.path;
    return u;
  }
  if (url.compare(0, 8, "redis://") == 0) {
    u.scheme = "redis";
    u.url = url;
    return u;
  }
  return absl::InvalidArgumentError(absl::StrCat("session store '", url, "': use dir://PATH or redis://HOST:PORT"));
}

StatusOr<std::unique_ptr<SessionStore>> open_session_store(const StoreUrl& url, int timeout_ms) {
  if (url.scheme == "dir") {
    EDGEINF_RETURN_IF_ERROR(make_store_directory(url.path));
    return open_dir_store(url.path);
  }
  return open_redis_store(url.url, timeout_ms);
}

}  // namespace edgeinf::server
