// ggml backend selection: CPU always; CUDA / Metal when compiled in.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

struct ggml_backend;
struct ggml_threadpool;
typedef struct ggml_backend* ggml_backend_t;

namespace corehead {

// Where the graphs ran: ggml's scheduler puts every node on the main backend when it supports
// the op there, else on the CPU. Per part of the model ("text", "vision"): how many nodes of the
// last graph each backend ran, and the ops that ran on the CPU although a GPU is the main backend.
struct Placement {
    std::map<std::string, std::map<std::string, int64_t>> nodes;  // part -> backend name -> nodes
    std::map<std::string, std::set<std::string>> cpu_ops;         // part -> ggml op names
};

struct Backends {
    ggml_backend_t main = nullptr;  // weights live and graphs run here
    ggml_backend_t cpu = nullptr;   // always present; equals main on CPU-only runs
    // The CPU backend's worker threads, kept alive between graphs: without it ggml starts and
    // joins n_threads - 1 threads for every graph, which dominates small graphs (one decode step).
    ggml_threadpool* threadpool = nullptr;
    void (*threadpool_free)(ggml_threadpool*) = nullptr;  // the CPU module's (a proc address)
    std::string name;               // "cpu", "cuda", "metal"
    int n_threads = 1;
    // Filled by the GraphRunners after each graph is placed (Engine::placement()).
    mutable std::mutex placement_mutex;
    mutable Placement placement;
    ~Backends();
};

// kind: "auto" (a GPU when one is compiled in and present, else CPU; the environment variable
// COREHEAD_BACKEND, when set, replaces "auto": how the test suite runs on a GPU), "cpu", "cuda", "metal".
// n_threads <= 0 picks the number of physical cores (at most 8). Throws InputError.
std::unique_ptr<Backends> create_backends(const std::string& kind, int n_threads);

// Backends compiled into this build ("cpu", and "cuda"/"metal" when enabled).
std::vector<std::string> compiled_backends();

// What this build runs on: how ggml was built and which CPU variant / devices it picked.
struct SystemInfo {
    std::string build;                 // "native" (tuned for the build machine) or "portable"
    std::string cpu_variant;           // portable: the CPU module loaded, e.g. "skylakex"; native: "native"
    std::string cpu_variant_path;      // portable: that module's file; native: ""
    std::vector<std::string> cpu_features;  // the CPU backend's compiled features, e.g. "AVX2", "AVX512"
    std::vector<std::string> backends; // registered ggml backends ("cpu", "cuda", ...)
    std::vector<std::string> devices;  // "name: description" of each device
};
SystemInfo system_info();

// The CPU backend's compiled feature flags ("AVX2" -> "1"), the variant's in a portable build.
bool cpu_feature(const char* name);

int default_thread_count();

}  // namespace corehead
