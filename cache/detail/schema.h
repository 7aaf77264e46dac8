// The cache index schema and its migrations (internal).
#pragma once

#include <string_view>

#include "cache/detail/db.h"
#include "hct/status.h"

namespace hct::detail {

// PRAGMA user_version of the index this build writes.
inline constexpr int kSchemaVersion = 3;

// The full DDL of schema version `v` as first released (1, 2 or 3); tests build old indexes from it.
std::string_view SchemaScript(int v);

// Sets the connection pragmas (WAL, foreign keys, synchronous) and registers hct_layer(name).
Status ConfigureConnection(Db* db, bool read_only);

// Creates the schema on an empty index, or upgrades an older one step by step (each step in one
// transaction that also bumps user_version and records itself in schema_migrations).
// Unsupported when the index is newer than this build; Corruption when it is not an SQLite file.
Status MigrateSchema(Db* db);

// Reads PRAGMA user_version.
Result<int> SchemaVersion(Db* db);

}  // namespace hct::detail
