// sbits-run: completion or interactive chat in the terminal.
//
// Stdout carries only generated text, streamed as it is produced; statistics and prompts go to
// stderr, so `sbits-run m.sbits -p "..." > out.txt` captures exactly the completion.
#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/backends.h"
#include "engine/session.h"
#include "engine/stop_matcher.h"
#include "engine/text/chat_template.h"
#include "engine/tools/cli.h"

namespace {

using namespace sbits;

struct RunOptions {
  std::string model;
  std::string prompt;
  bool have_prompt = false;
  int n_predict = 256;
  SamplerParams sampling;
  bool seed_given = false;
  int ctx = 0;
  int threads = 0;
  std::string backend = "auto";
  int device = 0;
  kernels::KvType kv_type = kernels::KvType::f16;
  bool chat = false;
  std::string system;
  std::string chat_template;
  bool verify = false;
  bool quiet_stats = false;
};

const char* kUsage = R"(usage: sbits-run MODEL.sbits [options]

Completion (default) or interactive chat with a .sbits model.

  -p, --prompt TEXT        prompt to complete ("" = BOS only); without -p and -i, reads stdin
  -n, --n-predict N        tokens to generate (default 256)
  -i, --chat               interactive chat with history (Ctrl-C stops a reply, Ctrl-D exits)
      --system TEXT        system message for --chat
      --chat-template T    override the model's template: llama2, chatml, zephyr, plain, or a file
      --temp T             temperature (default 0.8; 0 = greedy)
      --top-k K            top-k (default 40; 0 = off)
      --top-p P            top-p (default 0.95; 1 = off)
      --min-p P            min-p (default 0.05; 0 = off)
      --repeat-penalty R   repetition penalty over the last 64 tokens (default 1.0 = off)
      --presence-penalty F, --frequency-penalty F   OpenAI-style penalties (default 0)
      --seed S             sampling seed (default: random; the same seed gives the same text)
      --ctx N              context length (default: the model's)
      --kv-type f16|f32    KV cache element type (default f16)
      --threads N          CPU threads (default: all cores)
      --backend NAME       cpu, cuda, vulkan or auto (default auto)
      --device N           GPU of the backend (default 0; see --list-devices)
      --list-devices       list the devices of the compiled backends and exit
      --verify             check every tensor's checksum at load
      --no-stats           do not print statistics to stderr
  -h, --help               this help
)";

void parse_sampling_option(std::string_view a, cli::Args& args, RunOptions& o) {
  if (a == "--temp") o.sampling.temperature = cli::parse_in_range<float>(a, args.value(a), 0.0f, 100.0f);
  else if (a == "--top-k") o.sampling.top_k = cli::parse_in_range<int32_t>(a, args.value(a), 0, 1 << 30);
  else if (a == "--top-p") o.sampling.top_p = cli::parse_in_range<float>(a, args.value(a), 0.0f, 1.0f);
  else if (a == "--min-p") o.sampling.min_p = cli::parse_in_range<float>(a, args.value(a), 0.0f, 1.0f);
  else if (a == "--repeat-penalty") o.sampling.repeat_penalty = cli::parse_in_range<float>(a, args.value(a), 0.0f, 100.0f);
  else if (a == "--presence-penalty") o.sampling.presence_penalty = cli::parse_in_range<float>(a, args.value(a), -2.0f, 2.0f);
  else if (a == "--frequency-penalty") o.sampling.frequency_penalty = cli::parse_in_range<float>(a, args.value(a), -2.0f, 2.0f);
  else if (a == "--seed") { o.sampling.seed = cli::parse_number<uint64_t>(a, args.value(a)); o.seed_given = true; }
  else throw cli::UsageError(fmt::format("unknown option '{}'", a));
}

RunOptions parse_args(int argc, char** argv) {
  RunOptions o;
  cli::Args args(argc, argv);
  while (!args.done()) {
    std::string_view a = args.next();
    if (a == "-h" || a == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
    else if (a == "-p" || a == "--prompt") { o.prompt = args.value(a); o.have_prompt = true; }
    else if (a == "-n" || a == "--n-predict") o.n_predict = cli::parse_in_range<int>(a, args.value(a), 0, 1 << 30);
    else if (a == "-i" || a == "--chat") o.chat = true;
    else if (a == "--system") o.system = args.value(a);
    else if (a == "--chat-template") o.chat_template = args.value(a);
    else if (a == "--ctx") o.ctx = cli::parse_in_range<int>(a, args.value(a), 1, 1 << 24);
    else if (a == "--threads") o.threads = cli::parse_in_range<int>(a, args.value(a), 1, 1024);
    else if (a == "--backend") o.backend = args.value(a);
    else if (a == "--device") o.device = cli::parse_in_range<int>(a, args.value(a), 0, 1023);
    else if (a == "--list-devices") {
      for (const std::string& d : list_devices()) std::printf("%s\n", d.c_str());
      std::exit(0);
    }
    else if (a == "--verify") o.verify = true;
    else if (a == "--no-stats") o.quiet_stats = true;
    else if (a == "--kv-type") {
      std::string v = args.value(a);
      if (v != "f16" && v != "f32") throw cli::UsageError("option --kv-type expects f16 or f32, got '" + v + "'");
      o.kv_type = v == "f16" ? kernels::KvType::f16 : kernels::KvType::f32;
    } else if (a.size() > 1 && a[0] == '-') parse_sampling_option(a, args, o);
    else if (o.model.empty()) o.model = a;
    else throw cli::UsageError(fmt::format("unexpected argument '{}' (the model is '{}')", a, o.model));
  }
  if (o.model.empty()) throw cli::UsageError("no model given");
  if (o.chat && o.have_prompt) throw cli::UsageError("-p and --chat cannot be combined");
  if (!o.seed_given)
    o.sampling.seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return o;
}

void print_stats(const GenerationStats& st, const RunOptions& o, const Model& m) {
  if (o.quiet_stats) return;
  auto rate = [](int n, double s) { return s > 0 ? n / s : 0.0; };
  std::fprintf(stderr,
               "\n[sbits-run] %s | prompt %d tok, %.1f tok/s | generated %d tok, %.1f tok/s | first token %.0f ms | "
               "stop: %s\n",
               m.backend().device_description().c_str(), st.prompt_tokens, rate(st.prompt_tokens, st.prompt_seconds),
               st.generated_tokens, rate(st.generated_tokens - 1, st.decode_seconds), st.ttft_seconds * 1000.0,
               stop_reason_name(st.stop));
}

// The session generating right now, for the SIGINT handler (Ctrl-C stops the current reply).
std::atomic<Session*> g_active{nullptr};
extern "C" void on_sigint(int) {
  if (Session* s = g_active.load()) s->cancel();
}

GenerationStats generate_streaming(Session& s, std::span<const int32_t> prompt, int n, Sampler& sampler,
                                   StopMatcher* stops, std::string* reply) {
  g_active.store(&s);
  auto emit = [&](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    if (reply) reply->append(text);
  };
  GenerationStats st = s.generate(prompt, n, sampler, [&](int32_t, std::string_view text) {
    if (!stops) { emit(text); return true; }
    emit(stops->push(text));
    return !stops->stopped();
  });
  if (stops) emit(stops->flush());
  g_active.store(nullptr);
  return st;
}

int run_completion(const Model& m, const RunOptions& o) {
  std::string prompt = o.prompt;
  if (!o.have_prompt) {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    prompt = ss.str();
  }
  const Tokenizer& tok = m.tokenizer();
  std::vector<int32_t> ids = tok.encode(prompt, /*add_bos=*/true);
  if (ids.empty()) throw EngineError("the prompt is empty and the model has no BOS token to start from");
  SessionOptions so{o.ctx, o.kv_type, 0};  // 0: the backend's prefill chunk
  Session s(m, so);
  Sampler sampler(o.sampling, static_cast<int32_t>(m.config().vocab_size));
  std::signal(SIGINT, on_sigint);
  GenerationStats st = generate_streaming(s, ids, o.n_predict, sampler, nullptr, nullptr);
  std::fputc('\n', stdout);  // as llama2.c's run does, so the golden outputs compare byte for byte
  std::fflush(stdout);
  print_stats(st, o, m);
  return 0;
}

ChatTemplate load_template(const Model& m, const std::string& spec_or_file) {
  std::string spec = spec_or_file.empty() ? m.chat_template() : spec_or_file;
  if (spec.empty()) spec = "plain";
  if (std::ifstream in(spec); in && spec.find('\n') == std::string::npos && spec.find('/') != std::string::npos) {
    std::ostringstream ss;
    ss << in.rdbuf();
    spec = ss.str();
  }
  return ChatTemplate::from_spec(spec);
}

int run_chat(const Model& m, const RunOptions& o) {
  ChatTemplate tmpl = load_template(m, o.chat_template);
  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  SessionOptions so{o.ctx, o.kv_type, 0};  // 0: the backend's prefill chunk
  Session s(m, so);
  Sampler sampler(o.sampling, static_cast<int32_t>(m.config().vocab_size));
  std::fprintf(stderr, "[sbits-run] chat with %s (template %s). Ctrl-C stops a reply, Ctrl-D exits.\n",
               o.model.c_str(), tmpl.name().c_str());
  std::string line;
  while (true) {
    std::signal(SIGINT, SIG_DFL);  // at the prompt, Ctrl-C quits as usual
    std::fputs("\n> ", stderr);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    messages.push_back({"user", line});
    std::vector<int32_t> ids = m.tokenizer().encode_with_specials(tmpl.render(messages, true), false);
    // Reuse the cached prefix of the conversation; only the new part is prefilled.
    size_t keep = 0;
    const auto& have = s.tokens();
    while (keep < have.size() && keep + 1 < ids.size() && have[keep] == ids[keep]) ++keep;
    s.truncate(static_cast<int>(keep));
    if (ids.size() - keep + static_cast<size_t>(s.n_past()) >= static_cast<size_t>(s.n_ctx())) {
      std::fprintf(stderr, "[sbits-run] the conversation no longer fits in %d positions; starting over\n", s.n_ctx());
      messages.erase(messages.begin() + (o.system.empty() ? 0 : 1), messages.end() - 1);
      s.reset();
      ids = m.tokenizer().encode_with_specials(tmpl.render(messages, true), false);
      keep = 0;
    }
    StopMatcher stops(tmpl.stop_strings());
    std::string reply;
    std::signal(SIGINT, on_sigint);
    sampler.reset();
    GenerationStats st = generate_streaming(s, std::span<const int32_t>(ids).subspan(keep), o.n_predict, sampler,
                                            &stops, &reply);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    messages.push_back({"assistant", reply});
    print_stats(st, o, m);
  }
  std::fputc('\n', stderr);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  RunOptions o;
  try {
    o = parse_args(argc, argv);
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "sbits-run: error: %s\n\n%s", e.what(), kUsage);
    return 2;
  }
  try {
    BackendOptions bo;
    bo.threads = o.threads;
    bo.device = o.device;
    auto backend = make_backend(o.backend, bo);
    ModelLoadOptions lo;
    lo.verify_tensors = o.verify;
    auto model = Model::load(o.model, *backend, lo);
    return o.chat ? run_chat(*model, o) : run_completion(*model, o);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "sbits-run: error: %s\n", e.what());
    return 1;
  }
}
