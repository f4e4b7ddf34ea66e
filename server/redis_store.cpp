#include "server/redis_store.h"

#include <hiredis.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace edgeinf::server {
namespace {

constexpr const char* kPrefix = "edgeinf:session:";

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

class RedisStore final : public SessionStore {
 public:
  RedisStore(std::string url, std::string host, int port, int db)
      : url_(std::move(url)), host_(std::move(host)), port_(port), db_(db) {}
  ~RedisStore() override {
    if (ctx_ != nullptr) redisFree(ctx_);
  }

  Status connect() {
    if (ctx_ != nullptr && ctx_->err == 0) return absl::OkStatus();
    if (ctx_ != nullptr) redisFree(ctx_);
    timeval tv{5, 0};
    ctx_ = redisConnectWithTimeout(host_.c_str(), port_, tv);
    if (ctx_ == nullptr || ctx_->err != 0) {
      const std::string why = ctx_ != nullptr ? ctx_->errstr : "out of memory";
      if (ctx_ != nullptr) redisFree(ctx_);
      ctx_ = nullptr;
      return absl::UnavailableError(absl::StrCat("session store ", url_, ": ", why));
    }
    redisSetTimeout(ctx_, tv);
    if (db_ != 0) {
      Reply r(static_cast<redisReply*>(redisCommand(ctx_, "SELECT %d", db_)));
      if (r == nullptr || r->type == REDIS_REPLY_ERROR) return absl::UnavailableError("redis SELECT failed");
    }
    return absl::OkStatus();
  }

  // Runs a command (argv form, binary safe), reconnecting once if the connection dropped.
  StatusOr<Reply> command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) argv.push_back(a.data()), lens.push_back(a.size());
    for (int attempt = 0; attempt < 2; ++attempt) {
      EDGEINF_RETURN_IF_ERROR(connect());
      Reply r(static_cast<redisReply*>(redisCommandArgv(ctx_, int(argv.size()), argv.data(), lens.data())));
      if (r == nullptr) {
        redisFree(ctx_);
        ctx_ = nullptr;
        continue;
      }
      if (r->type == REDIS_REPLY_ERROR) {
        return absl::UnavailableError(absl::StrCat("session store ", url_, ": ", std::string(r->str, r->len)));
      }
      return r;
    }
    return absl::UnavailableError(absl::StrCat("session store ", url_, ": connection lost"));
  }

  Status put(const std::string& key, const std::string& bytes) override {
    if (bytes.empty()) return absl::InvalidArgumentError("session store: empty value");
    std::lock_guard<std::mutex> lock(mu_);
    return command({"SET", kPrefix + key, bytes}).status();
  }

  StatusOr<std::optional<std::string>> get(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    EDGEINF_ASSIGN_OR_RETURN(Reply r, command({"GET", kPrefix + key}));
    if (r->type == REDIS_REPLY_NIL) return std::optional<std::string>();
    return std::optional<std::string>(std::string(r->str, r->len));
  }

  StatusOr<std::optional<std::string>> get_head(const std::string& key, size_t max_bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    // One round trip: GETRANGE of a missing key is empty, and a stored value never is.
    EDGEINF_ASSIGN_OR_RETURN(Reply r, command({"GETRANGE", kPrefix + key, "0", absl::StrCat(int64_t(max_bytes) - 1)}));
    if (r->len == 0) return std::optional<std::string>();
    return std::optional<std::string>(std::string(r->str, r->len));
  }

  Status remove(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    return command({"DEL", kPrefix + key}).status();
  }

  StatusOr<std::vector<std::string>> list(const std::string& prefix) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> keys;
    std::string cursor = "0";
    const std::string pattern = absl::StrCat(kPrefix, prefix, "*");
    const size_t skip = std::string(kPrefix).size();
    do {
      EDGEINF_ASSIGN_OR_RETURN(Reply r, command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}));
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return absl::UnavailableError("redis SCAN: bad reply");
      cursor.assign(r->element[0]->str, r->element[0]->len);
      const redisReply* arr = r->element[1];
      for (size_t i = 0; i < arr->elements; ++i) keys.emplace_back(arr->element[i]->str + skip, arr->element[i]->len - skip);
    } while (cursor != "0");
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    return keys;
  }

  std::string url() const override { return url_; }

 private:
  std::mutex mu_;
  std::string url_, host_;
  int port_, db_;
  redisContext* ctx_ = nullptr;
};

}  // namespace

StatusOr<std::unique_ptr<SessionStore>> open_redis_store(const std::string& url) {
  constexpr std::string_view kScheme = "redis://";
  if (url.compare(0, kScheme.size(), kScheme) != 0) return absl::InvalidArgumentError("not a redis:// URL");
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
  auto store = std::make_unique<RedisStore>(url, host, port, db);
  EDGEINF_RETURN_IF_ERROR(store->connect());
  EDGEINF_RETURN_IF_ERROR(store->command({"PING"}).status());
  return std::unique_ptr<SessionStore>(std::move(store));
}

StatusOr<std::unique_ptr<SessionStore>> open_session_store(const std::string& url) {
  if (url.compare(0, 6, "dir://") == 0) return open_dir_store(url.substr(6));
  if (url.compare(0, 8, "redis://") == 0) return open_redis_store(url);
  return absl::InvalidArgumentError(absl::StrCat("session store '", url, "': use dir://PATH or redis://HOST:PORT"));
}

}  // namespace edgeinf::server
