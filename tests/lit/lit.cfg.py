# lit configuration for llamac's IR text tests: each file holds RUN lines and
# FileCheck CHECK lines, e.g.
#   // RUN: %llamac opt %s --passes=fold-rmsnorm-gain | FileCheck %s
import os
import lit.formats

config.name = "llamac"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".ir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(lit_config.params["build_dir"], "tests", "lit")
config.substitutions.append(("%llamarun", os.path.join(lit_config.params["build_dir"], "tools", "llamarun")))
config.substitutions.append(("%llamagen", os.path.join(lit_config.params["build_dir"], "tools", "llamagen")))
config.substitutions.append(("%llamac", os.path.join(lit_config.params["build_dir"], "tools", "llamac")))
config.substitutions.append(("%models", lit_config.params["models_dir"]))
config.environment["PATH"] = lit_config.params["llvm_tools_dir"] + os.pathsep + os.environ.get("PATH", "")
