#include "runtime/Version.h"

namespace llamac {
const char *versionString() { return "llamac 0.1.0"; }
} // namespace llamac
