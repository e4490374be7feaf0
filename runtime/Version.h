#pragma once

namespace llamac {
/// "llamac 0.1.0": recorded in every plan as its producer.
const char *versionString();
} // namespace llamac
