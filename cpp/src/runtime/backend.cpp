#include "runtime/backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "corehead/error.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "runtime/ggml_log.h"

#ifdef GGML_BACKEND_DL
#include <dlfcn.h>
#endif

namespace corehead {

namespace {

// The CPU backend is reached through the backend registry only (proc addresses), never by
// linking ggml-cpu: in a portable build (COREHEAD_PORTABLE, docs/architecture.md) ggml-cpu is one
// of several modules, one per instruction set, and ggml loads the best one for this CPU at run time.
#ifdef GGML_BACKEND_DL
std::string dir_of(const void* addr) {
    Dl_info info{};
    if (!dladdr(addr, &info) || !info.dli_fname) return "";
    std::string path = info.dli_fname;
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}
#endif

// Loads the backend modules once, from the folder of the ggml library we link (the wheel's
// corehead/lib); a no-op when the backends are built in.
void load_backends() {
#ifdef GGML_BACKEND_DL
    static std::once_flag once;
    std::call_once(once, [] {
        install_ggml_log();  // ggml's "loaded CPU backend from ..." only with COREHEAD_VERBOSE
        const std::string dir = dir_of(reinterpret_cast<const void*>(&ggml_backend_load_all_from_path));
        ggml_backend_load_all_from_path(dir.empty() ? nullptr : dir.c_str());
    });
#endif
}

ggml_backend_reg_t cpu_reg() {
    load_backends();
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    return dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
}

template <class F>
F cpu_proc(const char* name) {
    ggml_backend_reg_t reg = cpu_reg();
    return reg ? reinterpret_cast<F>(ggml_backend_reg_get_proc_address(reg, name)) : nullptr;
}

// Registry names are "CPU", "CUDA", "Metal", ...: compare case-insensitively.
std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

ggml_backend_dev_t find_device(const std::string& kind) {
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
        if (lower(ggml_backend_reg_name(reg)) == kind) return dev;
    }
    return nullptr;
}

}  // namespace

Backends::~Backends() {
    if (main && main != cpu) ggml_backend_free(main);
    if (cpu) ggml_backend_free(cpu);
    if (threadpool && threadpool_free) threadpool_free(threadpool);  // after the backend that uses it
}

int default_thread_count() {
    // Hyper-threads do not help the matrix kernels; assume 2 per core beyond 4.
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    unsigned n = hw <= 4 ? hw : hw / 2;
    return static_cast<int>(std::min(n, 8u));
}

std::vector<std::string> compiled_backends() {
    load_backends();
    std::vector<std::string> out;
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) out.push_back(lower(ggml_backend_reg_name(ggml_backend_reg_get(i))));
    return out;
}

std::unique_ptr<Backends> create_backends(const std::string& kind_requested, int n_threads) {
    install_ggml_log();
    std::string kind_in = kind_requested;
    const char* env = std::getenv("COREHEAD_BACKEND");
    if (lower(kind_in) == "auto" && env && *env) kind_in = env;  // e.g. the suite on a GPU machine
    const std::string kind = lower(kind_in);
    if (kind != "auto" && kind != "cpu" && kind != "cuda" && kind != "metal") {
        throw InputError("backend must be one of 'auto', 'cpu', 'cuda', 'metal' (got '" + kind_in + "'" +
                         (kind_in != kind_requested ? std::string(" from COREHEAD_BACKEND)") : std::string(")")));
    }
    if (n_threads < 0 || n_threads > 1024) throw InputError("n_threads must be between 1 and 1024 (or None for automatic)");
    auto b = std::make_unique<Backends>();
    b->n_threads = n_threads > 0 ? n_threads : default_thread_count();
    load_backends();
    b->cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    if (!b->cpu) {
        throw Error("could not initialise the ggml CPU backend (portable build: no CPU module in the wheel's "
                    "corehead/lib suits this CPU; reinstall corehead)");
    }
    auto set_threads = cpu_proc<ggml_backend_set_n_threads_t>("ggml_backend_set_n_threads");
    auto pool_new = cpu_proc<decltype(&ggml_threadpool_new)>("ggml_threadpool_new");
    auto pool_free = cpu_proc<decltype(&ggml_threadpool_free)>("ggml_threadpool_free");
    auto set_pool = cpu_proc<decltype(&ggml_backend_cpu_set_threadpool)>("ggml_backend_cpu_set_threadpool");
    if (!set_threads || !pool_new || !pool_free || !set_pool) throw Error("the ggml CPU backend lacks thread controls");
    b->threadpool_free = pool_free;
    set_threads(b->cpu, b->n_threads);
    if (b->n_threads > 1) {
        ggml_threadpool_params tpp = ggml_threadpool_params_default(b->n_threads);
        b->threadpool = pool_new(&tpp);
        if (!b->threadpool) throw Error("could not start the ggml CPU thread pool");
        set_pool(b->cpu, b->threadpool);
    }

    b->main = b->cpu;
    b->name = "cpu";
    if (kind == "cpu") return b;
    ggml_backend_dev_t dev = nullptr;
    if (kind == "auto") {
        for (const char* k : {"cuda", "metal"}) {
            if ((dev = find_device(k))) break;
        }
        if (!dev) return b;
    } else {
        dev = find_device(kind);
        const std::vector<std::string> built = compiled_backends();
        if (!dev && std::find(built.begin(), built.end(), kind) != built.end()) {
            throw InputError("backend '" + kind + "' is compiled into this build of corehead but no " + kind +
                             " device was found (no GPU, or its driver is not loaded); use backend='cpu' or 'auto'");
        }
        if (!dev) {
            throw InputError("backend '" + kind + "' is not compiled into this build of corehead; reinstall with "
                             "pip install . -C cmake.define.GGML_" + (kind == "cuda" ? std::string("CUDA") : std::string("METAL")) +
                             "=ON, or use backend='cpu'");
        }
    }
    b->main = ggml_backend_dev_init(dev, nullptr);
    if (!b->main) throw Error("could not initialise the " + kind + " backend (no usable device?)");
    b->name = lower(ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev)));
    return b;
}

bool cpu_feature(const char* name) {
    auto get = cpu_proc<ggml_backend_get_features_t>("ggml_backend_get_features");
    if (!get) return false;
    for (ggml_backend_feature* f = get(cpu_reg()); f && f->name; ++f) {
        if (std::strcmp(f->name, name) == 0) return std::strcmp(f->value, "0") != 0;
    }
    return false;
}

SystemInfo system_info() {
    load_backends();
    SystemInfo s;
#ifdef GGML_BACKEND_DL
    s.build = "portable";
    if (ggml_backend_reg_t reg = cpu_reg()) {
        // The registry object lives in the module ggml picked: its file names the variant.
        Dl_info info{};
        if (dladdr(reinterpret_cast<const void*>(reg), &info) && info.dli_fname) {
            s.cpu_variant_path = info.dli_fname;
            std::string f = s.cpu_variant_path.substr(s.cpu_variant_path.rfind('/') + 1);  // libggml-cpu-haswell.so
            const std::string pre = "libggml-cpu-";
            if (f.rfind(pre, 0) == 0) f = f.substr(pre.size());
            s.cpu_variant = f.substr(0, f.find(".so") != std::string::npos ? f.find(".so") : f.find(".dylib"));
        }
    }
#else
    s.build = "native";
    s.cpu_variant = "native";
#endif
    if (auto get = cpu_proc<ggml_backend_get_features_t>("ggml_backend_get_features")) {
        for (ggml_backend_feature* f = get(cpu_reg()); f && f->name; ++f) {
            if (std::strcmp(f->value, "0") != 0) s.cpu_features.push_back(std::strcmp(f->value, "1") == 0
                                                                            ? f->name : std::string(f->name) + "=" + f->value);
        }
    }
    s.backends = compiled_backends();
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        s.devices.push_back(std::string(ggml_backend_dev_name(d)) + ": " + ggml_backend_dev_description(d));
    }
    return s;
}

}  // namespace corehead
