#include "runtime/backend.h"

#include <algorithm>
#include <thread>

#include "corehead/error.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "runtime/ggml_log.h"

namespace corehead {

namespace {

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
    if (threadpool) ggml_threadpool_free(threadpool);  // after the backend that uses it
}

int default_thread_count() {
    // Hyper-threads do not help the matrix kernels; assume 2 per core beyond 4.
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    unsigned n = hw <= 4 ? hw : hw / 2;
    return static_cast<int>(std::min(n, 8u));
}

std::vector<std::string> compiled_backends() {
    std::vector<std::string> out;
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) out.push_back(lower(ggml_backend_reg_name(ggml_backend_reg_get(i))));
    return out;
}

std::unique_ptr<Backends> create_backends(const std::string& kind_in, int n_threads) {
    install_ggml_log();
    const std::string kind = lower(kind_in);
    if (kind != "auto" && kind != "cpu" && kind != "cuda" && kind != "metal") {
        throw InputError("backend must be one of 'auto', 'cpu', 'cuda', 'metal' (got '" + kind_in + "')");
    }
    if (n_threads < 0 || n_threads > 1024) throw InputError("n_threads must be between 1 and 1024 (or None for automatic)");
    auto b = std::make_unique<Backends>();
    b->n_threads = n_threads > 0 ? n_threads : default_thread_count();
    b->cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    if (!b->cpu) throw Error("could not initialise the ggml CPU backend");
    ggml_backend_cpu_set_n_threads(b->cpu, b->n_threads);
    if (b->n_threads > 1) {
        ggml_threadpool_params tpp = ggml_threadpool_params_default(b->n_threads);
        b->threadpool = ggml_threadpool_new(&tpp);
        if (!b->threadpool) throw Error("could not start the ggml CPU thread pool");
        ggml_backend_cpu_set_threadpool(b->cpu, b->threadpool);
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

}  // namespace corehead
