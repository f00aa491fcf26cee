// Checkpoint files on disk (ARCHITECTURE.md section 5): durable writes and
// the epoch-<N>.pt naming. Torch-free: the caller's callback writes the
// bytes (a torch archive) to the temporary path it is given.
//
// A checkpoint becomes visible under its final name only once it is whole:
// it is written under a name no other writer shares, fsync'd, renamed, and
// its directory fsync'd, so a crash leaves either the old set of files or
// the new one, never a torn epoch-<N>.pt. Pure functions over the
// filesystem; none throws except through the caller's callback.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace madam::worker {

// Writes `dir`/`name` durably: `write` is called with a temporary path in
// `dir` and must leave the whole file there. Creates `dir` when missing.
// `before_publish`, when set, runs after the temporary file is durable and
// before it is renamed into place (the trainer prunes old checkpoints there,
// so the directory never holds more than its keep count of them).
Status WriteFileDurably(const std::string& dir, const std::string& name,
                        const std::function<void(const std::string& tmp_path)>& write,
                        const std::function<void()>& before_publish = nullptr);

// Removes all but the newest `keep` epoch-<N>.pt files under `dir` (keep
// >= 0); other files are left alone. Best effort: a file that cannot be
// removed costs disk, not correctness.
void PruneCheckpoints(const std::string& dir, int keep);

// The name of epoch `epoch`'s checkpoint: "epoch-<N>.pt".
std::string CheckpointName(int64_t epoch);

}  // namespace madam::worker
