#include "llmc/eval/tasks.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "llmc/core/error.h"
#include "llmc/core/options.h"
#include "llmc/core/progress.h"
#include "llmc/io/json_file.h"

namespace llmc::eval {

namespace {

constexpr size_t kMaxChoices = 1000;

std::string string_field(const nlohmann::json& doc, const char* key, const std::string& where) {
  const auto it = doc.find(key);
  if (it == doc.end() || !it->is_string()) throw InputError(where + ": '" + key + "' must be a string");
  std::string s = it->get<std::string>();
  if (!tokenizer::is_valid_utf8(s)) throw InputError(where + ": '" + key + "' is not valid UTF-8");
  return s;
}

// One sequence to score: the continuation's log-likelihood after the context.
struct Request {
  std::vector<int64_t> tokens;  // context then continuation, cut to the model's positions + 1
  int64_t continuation{0};      // tokens at the end that are scored
  double loglik{0};
  bool greedy{false};
};

// lm-evaluation-harness's split: trailing spaces of the context move to the continuation,
// the whole string is encoded once and the continuation is what follows the context's own
// encoding. BOS is prepended when the tokenizer adds one (as the perplexity protocol does).
Request make_request(const tokenizer::Tokenizer& tok, std::string context, std::string continuation, int64_t max_positions,
                     const std::string& where) {
  const size_t keep = context.find_last_not_of(' ');
  const size_t cut = keep == std::string::npos ? 0 : keep + 1;
  continuation = context.substr(cut) + continuation;
  context.resize(cut);
  std::vector<int64_t> ctx_ids = tok.encode(context, true);
  std::vector<int64_t> whole = tok.encode(context + continuation, true);
  if (ctx_ids.empty()) {  // no BOS and no context: the harness conditions on end-of-text
    const auto eos = tok.special().eos;
    if (!eos) throw InputError(where + ": empty context and the tokenizer has neither BOS nor EOS to condition on");
    ctx_ids = {*eos};
    whole.insert(whole.begin(), *eos);
  }
  Request r;
  if (whole.size() <= ctx_ids.size()) throw InputError(where + ": the continuation encodes to no token after the context");
  r.continuation = static_cast<int64_t>(whole.size() - ctx_ids.size());
  if (r.continuation > max_positions) {
    throw InputError(where + ": the continuation is " + std::to_string(r.continuation) + " tokens, more than the model's " +
                     std::to_string(max_positions) + " positions");
  }
  // The model sees at most max_positions tokens: the last max_positions + 1 of the sequence,
  // all but the last as input (the harness's left truncation).
  const size_t limit = static_cast<size_t>(max_positions) + 1;
  if (whole.size() > limit) whole.erase(whole.begin(), whole.end() - static_cast<std::ptrdiff_t>(limit));
  r.tokens = std::move(whole);
  return r;
}

void score_requests(model::CausalLM& model, std::vector<Request>& reqs, int64_t batch_size, const std::string& label,
                    const RunContext& ctx) {
  std::vector<size_t> order(reqs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return reqs[a].tokens.size() > reqs[b].tokens.size(); });
  const auto long_cpu = at::TensorOptions().dtype(c10::kLong);
  Progress progress(label, static_cast<int64_t>(reqs.size()), ctx.progress, "seq");
  c10::InferenceMode guard;
  for (size_t b0 = 0; b0 < order.size(); b0 += static_cast<size_t>(batch_size)) {
    ctx.check_cancelled();
    const size_t b1 = std::min(order.size(), b0 + static_cast<size_t>(batch_size));
    const int64_t B = static_cast<int64_t>(b1 - b0);
    const int64_t T = static_cast<int64_t>(reqs[order[b0]].tokens.size()) - 1;  // longest input
    at::Tensor ids = at::zeros({B, T}, long_cpu), mask = at::zeros({B, T}, long_cpu);
    int64_t* ip = ids.data_ptr<int64_t>();
    int64_t* mp = mask.data_ptr<int64_t>();
    for (int64_t row = 0; row < B; ++row) {
      const auto& tk = reqs[order[b0 + static_cast<size_t>(row)]].tokens;
      for (size_t t = 0; t + 1 < tk.size(); ++t) {
        ip[row * T + static_cast<int64_t>(t)] = tk[t];
        mp[row * T + static_cast<int64_t>(t)] = 1;
      }
    }
    const at::Tensor logits = model.forward(ids.to(model.device()), mask.to(model.device()), nullptr);
    for (int64_t row = 0; row < B; ++row) {
      Request& r = reqs[order[b0 + static_cast<size_t>(row)]];
      const int64_t n = static_cast<int64_t>(r.tokens.size());
      const int64_t first = n - 1 - r.continuation;  // logits at first..n-2 predict the continuation
      const at::Tensor rows = logits[row].slice(0, first, n - 1).to(c10::kCPU, c10::kFloat);
      const at::Tensor logp = at::log_softmax(rows, -1);
      const at::Tensor want = at::tensor(std::vector<int64_t>(r.tokens.end() - r.continuation, r.tokens.end()), long_cpu);
      r.loglik = logp.gather(1, want.unsqueeze(1)).to(c10::kDouble).sum().item<double>();
      r.greedy = at::argmax(logp, -1).equal(want);
    }
    progress.advance(B);
  }
  progress.finish();
}

double stderr_of_rate(double p, int64_t n) { return n > 1 ? std::sqrt(p * (1 - p) / static_cast<double>(n - 1)) : 0.0; }

}  // namespace

std::vector<std::string> split_task_list(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) throw UsageError("--tasks: empty entry in '" + quote_prefix(list) + "' (a comma-separated list of .jsonl files)");
    out.push_back(item);
  }
  if (out.empty()) throw UsageError("--tasks: no file named");
  return out;
}

Task read_task_file(const std::string& path, int64_t limit) {
  Task task;
  task.path = path;
  task.name = std::filesystem::path(path).stem().string();
  std::istringstream lines(io::read_text_file(path, io::json_limits().max_bytes));
  std::string line;
  bool typed = false;
  for (int64_t lineno = 1; std::getline(lines, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (limit > 0 && static_cast<int64_t>(task.examples.size()) >= limit) break;
    const std::string where = path + ":" + std::to_string(lineno);
    const nlohmann::json doc = io::parse_json(line, where);
    if (!doc.is_object()) throw InputError(where + ": expected a JSON object");
    TaskExample ex;
    ex.context = string_field(doc, "context", where);
    const bool has_choices = doc.contains("choices"), has_target = doc.contains("target");
    if (has_choices == has_target) throw InputError(where + ": an example has either 'choices' (with 'gold') or 'target'");
    if (typed && has_target != task.cloze) throw InputError(where + ": a task file mixes multiple-choice and cloze examples");
    typed = true;
    task.cloze = has_target;
    if (has_target) {
      ex.target = string_field(doc, "target", where);
      if (ex.target.empty()) throw InputError(where + ": 'target' is empty");
    } else {
      const auto& ch = doc["choices"];
      if (!ch.is_array() || ch.size() < 2 || ch.size() > kMaxChoices) {
        throw InputError(where + ": 'choices' must be an array of 2.." + std::to_string(kMaxChoices) + " strings");
      }
      for (const auto& c : ch) {
        if (!c.is_string() || c.get<std::string>().empty()) throw InputError(where + ": every choice must be a non-empty string");
        if (!tokenizer::is_valid_utf8(c.get<std::string>())) throw InputError(where + ": a choice is not valid UTF-8");
        ex.choices.push_back(c.get<std::string>());
      }
      const auto g = doc.find("gold");
      if (g == doc.end() || !g->is_number_integer() || g->get<int64_t>() < 0 ||
          g->get<int64_t>() >= static_cast<int64_t>(ex.choices.size())) {
        throw InputError(where + ": 'gold' must be the index of the correct choice (0.." + std::to_string(ex.choices.size() - 1) + ")");
      }
      ex.gold = g->get<int64_t>();
    }
    task.examples.push_back(std::move(ex));
  }
  if (task.examples.empty()) throw InputError(path + ": no example in the task file");
  return task;
}

nlohmann::json score_task(model::CausalLM& model, const tokenizer::Tokenizer& tok, const Task& task, int64_t batch_size,
                          const RunContext& ctx) {
  if (batch_size < 1) throw UsageError("--batch_size must be >= 1, found " + std::to_string(batch_size));
  const int64_t P = model.info().max_positions;
  std::vector<Request> reqs;
  std::vector<size_t> first_request;  // per example, its first request
  for (size_t i = 0; i < task.examples.size(); ++i) {
    const auto& ex = task.examples[i];
    const std::string where = task.path + " example " + std::to_string(i + 1);
    first_request.push_back(reqs.size());
    if (task.cloze) {
      reqs.push_back(make_request(tok, ex.context, ex.target, P, where));
    } else {
      for (const auto& c : ex.choices) reqs.push_back(make_request(tok, ex.context, c, P, where));
    }
  }
  for (const auto& r : reqs) {
    for (int64_t id : r.tokens) {
      if (id < 0 || id >= model.info().vocab_size) throw InputError(task.path + ": token id " + std::to_string(id) + " is outside the model's vocabulary");
    }
  }
  score_requests(model, reqs, batch_size, "task " + task.name, ctx);

  const auto n = static_cast<int64_t>(task.examples.size());
  nlohmann::json j;
  j["type"] = task.cloze ? "cloze" : "multiple_choice";
  j["examples"] = n;
  int64_t correct = 0, correct_norm = 0;
  double ll_sum = 0;
  for (size_t i = 0; i < task.examples.size(); ++i) {
    const auto& ex = task.examples[i];
    const size_t r0 = first_request[i];
    if (task.cloze) {
      correct += reqs[r0].greedy ? 1 : 0;
      ll_sum += reqs[r0].loglik;
      continue;
    }
    size_t best = 0, best_norm = 0;  // the first of equal scores wins, as numpy's argmax
    for (size_t c = 1; c < ex.choices.size(); ++c) {
      if (reqs[r0 + c].loglik > reqs[r0 + best].loglik) best = c;
      const auto norm = [&](size_t k) { return reqs[r0 + k].loglik / static_cast<double>(ex.choices[k].size()); };
      if (norm(c) > norm(best_norm)) best_norm = c;
    }
    correct += static_cast<int64_t>(best) == ex.gold ? 1 : 0;
    correct_norm += static_cast<int64_t>(best_norm) == ex.gold ? 1 : 0;
  }
  const double acc = static_cast<double>(correct) / static_cast<double>(n);
  j["acc"] = acc;
  j["acc_stderr"] = stderr_of_rate(acc, n);
  if (task.cloze) {
    j["target_perplexity"] = std::exp(-ll_sum / static_cast<double>(n));
  } else {
    const double accn = static_cast<double>(correct_norm) / static_cast<double>(n);
    j["acc_norm"] = accn;
    j["acc_norm_stderr"] = stderr_of_rate(accn, n);
  }
  return j;
}

}  // namespace llmc::eval
