// The session store interface, for a service that brings a store of its own (server/redis_store)
// or wraps one (server/store_monitor): the engine commits and reads sessions through it. The
// engine's own store, dir://PATH, opens with open_dir_store.
#pragma once

#include "engine/session/session_store.h"
