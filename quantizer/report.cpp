#include "quantizer/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "formats/tiled_layout.h"

namespace sbits::quantizer {
namespace {

const char* bits_color(int bits) {
  switch (bits) {
    case 2: return "#d7301f";
    case 3: return "#fc8d59";
    case 4: return "#fdcc8a";
    case 5: return "#c7e9b4";
    case 6: return "#7fcdbb";
    case 8: return "#2c7fb8";
    default: return "#253494";  // 16: f16 tiles
  }
}

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

// "blk.3.ffn_down" -> "ffn_down"; others keep their name.
std::string kind_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return name;
  const size_t dot = name.find('.', 4);
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

std::string legend() {
  std::string s = "<div class=legend>";
  for (int b : {2, 3, 4, 5, 6, 8, 16})
    s += fmt::format("<span><i style='background:{}'></i>{} bit{}</span>", bits_color(b), b, b == 16 ? " (f16)" : "");
  return s + "</div>";
}

// Each tensor's tile grid, transposed so long vocab matrices run left to right: x = tile row
// (output channels), y = tile column (input channels).
std::string heatmap(const SbitsFile& f) {
  std::string body;
  int y = 0;
  constexpr int kLabel = 150, kWidth = 900, kCellH = 5;
  for (const TensorInfo& t : f.tensors()) {
    if (t.layout != kTiledLayoutId) continue;
    const TiledTensor tt = parse_tiled(t, f.bytes(t), t.name + ": ");
    const double cw = std::clamp(double(kWidth) / double(tt.grid.tiles_r), 0.5, 8.0);
    body += fmt::format("<text x='0' y='{}' class=lbl>{}</text>", y + 9, escape(t.name));
    for (uint64_t tr = 0; tr < tt.grid.tiles_r; ++tr)
      for (uint64_t tc = 0; tc < tt.grid.tiles_c; ++tc)
        body += fmt::format("<rect x='{:.1f}' y='{}' width='{:.2f}' height='{}' fill='{}'/>", kLabel + double(tr) * cw,
                            y + int(tc) * kCellH, cw, kCellH, bits_color(tt.bits[tr * tt.grid.tiles_c + tc]));
    y += std::max(12, int(tt.grid.tiles_c) * kCellH) + 4;
  }
  return fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' shape-rendering='crispEdges'>"
                     "{}</svg>",
                     kLabel + kWidth + 10, y, body);
}

// Share of weights at each bitwidth per tensor kind, as stacked horizontal bars.
std::string histogram(const SbitsFile& f) {
  std::map<std::string, std::map<int, double>> share;  // kind -> bits -> weights
  std::vector<std::string> order;
  for (const TensorInfo& t : f.tensors()) {
    if (t.layout != kTiledLayoutId) continue;
    const TiledTensor tt = parse_tiled(t, f.bytes(t), t.name + ": ");
    const std::string k = kind_of(t.name);
    if (!share.count(k)) order.push_back(k);
    for (uint64_t i = 0; i < tt.grid.count(); ++i) {
      const uint64_t tr = i / tt.grid.tiles_c, tc = i % tt.grid.tiles_c;
      const uint64_t rows = std::min<uint64_t>(tt.params.tile_rows, tt.grid.rows - tr * tt.params.tile_rows);
      const uint64_t cols = std::min<uint64_t>(tt.params.tile_cols, tt.grid.cols - tc * tt.params.tile_cols);
      share[k][tt.bits[i]] += double(rows * cols);
    }
  }
  std::string body;
  int y = 0;
  constexpr int kLabel = 150, kWidth = 600, kBar = 16;
  for (const std::string& k : order) {
    double total = 0, mean = 0;
    for (const auto& [b, w] : share[k]) total += w, mean += b * w;
    double x = kLabel;
    body += fmt::format("<text x='0' y='{}' class=lbl>{}</text>", y + 12, escape(k));
    for (const auto& [b, w] : share[k]) {
      const double width = w / total * kWidth;
      body += fmt::format("<rect x='{:.1f}' y='{}' width='{:.1f}' height='{}' fill='{}'><title>{} bits: {:.1f}%"
                          "</title></rect>",
                          x, y, width, kBar, bits_color(b), b, 100.0 * w / total);
      x += width;
    }
    body += fmt::format("<text x='{}' y='{}' class=lbl>mean {:.2f} bits</text>", kLabel + kWidth + 8, y + 12,
                        mean / total);
    y += kBar + 6;
  }
  return fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}'>{}</svg>", kLabel + kWidth + 130,
                     y, body);
}

std::string settings_table(const ReportInput& in) {
  const QuantizeOptions& o = *in.options;
  const QuantizeReport& r = *in.report;
  const MixedStats& m = r.mixed;
  auto row = [](const std::string& k, const std::string& v) {
    return fmt::format("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
  };
  std::string s = "<table>";
  s += row("input", in.input_path) + row("output", in.output_path);
  s += row("method", o.method) + row("per-tile quantizer", tile_method_name(o.tile_method));
  s += row("budget", o.size_bytes ? fmt::format("{} bytes (file)", o.size_bytes) : fmt::format("{} bpw", o.bpw));
  s += row("actual", fmt::format("{:.4f} bits per weight; {} tensor bytes; file {} bytes", r.plan.bpw,
                                 r.plan.tensor_bytes, r.file_bytes));
  s += row("tile shape", fmt::format("{} x {}, scale group {}", o.params.tile_rows, o.params.tile_cols,
                                     o.params.group));
  if (m.calib_tokens) {
    s += row("calibration", fmt::format("{} ({} tokens, xxh64 {:016x}); loss {:.4f}", o.calib_path, m.calib_tokens,
                                        m.calib_hash, m.calib_loss));
    s += row("sensitivity", o.sensitivity);
    s += row("channel reordering", m.reordered ? "hidden + FFN, folded into the weights" : "none");
  }
  s += row("time", fmt::format("{:.1f} s (calibration and sensitivity {:.1f} s, error tables {:.1f} s, write {:.1f} s)",
                               r.seconds, m.seconds_calibration, m.seconds_tables, m.seconds_write));
  return s + "</table>";
}

std::string loss_table(const ReportInput& in) {
  const MixedStats& m = in.report->mixed;
  std::string s = "<table><tr><th></th><th>loss increase (nats/token)</th></tr>";
  s += fmt::format("<tr><th>predicted (sum over tiles)</th><td>{:.5f}</td></tr>", m.predicted);
  if (!std::isnan(in.loss_after)) {
    s += fmt::format("<tr><th>measured on {} calibration tokens</th><td>{:.5f} ({:.4f} &rarr; {:.4f})</td></tr>",
                     in.measured_tokens, in.loss_after - in.loss_before, in.loss_before, in.loss_after);
  }
  s += "</table>";
  if (m.budget_bytes) {
    s += fmt::format("<p>Allocation of {} bytes: exact greedy predicts {:.6f} using {} bytes; the Lagrangian "
                     "(bisection on a price per byte) predicts {:.6f} using {} bytes ({:+.3f}%).</p>",
                     m.budget_bytes, m.predicted_greedy, m.bytes_greedy, m.predicted_lagrange, m.bytes_lagrange,
                     m.predicted_greedy > 0 ? 100.0 * (m.predicted_lagrange / m.predicted_greedy - 1.0) : 0.0);
  }
  s += "<p>Predicted values use the sensitivity model's units; with the proxy they rank tiles but are not nats. "
       "The gradient (Fisher) model predicts nats.</p>";
  return s;
}

}  // namespace

std::string render_report_html(const ReportInput& in) {
  std::string h = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>sbits-quantize report</title><style>"
                  "body{font:14px sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse;margin:8px 0}"
                  "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f4f4f4}"
                  ".lbl{font:10px monospace}.legend span{margin-right:14px}.legend i{display:inline-block;width:12px;"
                  "height:12px;margin-right:4px;vertical-align:middle}</style></head><body>";
  h += "<h1>sbits-quantize report</h1>" + settings_table(in);
  h += "<h2>Loss</h2>" + loss_table(in);
  h += "<h2>Bitwidth per tensor kind (share of weights)</h2>" + legend() + histogram(*in.output);
  h += "<h2>Bitwidth of every tile</h2><p>One band per tensor: x runs over tile rows (output channels), y over "
       "tile columns (input channels).</p>" +
       legend() + heatmap(*in.output);
  return h + "</body></html>\n";
}

void write_report(const std::string& path, const std::string& html) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << html;
    f.flush();
    if (!f) throw QuantizerError("--report " + path + ": cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw QuantizerError("--report " + path + ": cannot rename the temporary file into place");
  }
}

}  // namespace sbits::quantizer
