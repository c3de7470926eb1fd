// Init script for browser tests: what the graph draws as text on its canvas, in canvas pixels. vis-network draws
// names with fillText (after an outline with strokeText) and clears the whole canvas before each redraw, so the
// boxes since the last clear are the picture on screen. window.__texts() → [{text, x1, y1, x2, y2, px, width,
// height}], px being the font size as drawn.
(() => {
  if (window.__texts) return;
  const proto = CanvasRenderingContext2D.prototype;
  const fill = proto.fillText, clear = proto.clearRect;
  let current = [], previous = [];
  proto.clearRect = function (...args) {
    if (current.length) previous = current;
    current = [];
    return clear.apply(this, args);
  };
  proto.fillText = function (text, x, y) {
    const t = this.getTransform(), m = this.measureText(text);
    const left = this.textAlign === "center" ? x - m.width / 2
      : (this.textAlign === "right" || this.textAlign === "end") ? x - m.width : x;
    const corner = (px, py) => [t.a * px + t.c * py + t.e, t.b * px + t.d * py + t.f];
    const [x1, y1] = corner(left, y - m.actualBoundingBoxAscent);
    const [x2, y2] = corner(left + m.width, y + m.actualBoundingBoxDescent);
    const size = parseFloat((this.font.match(/([\d.]+)px/) || [0, 0])[1]);
    current.push({text: String(text), x1, y1, x2, y2, px: size * Math.hypot(t.a, t.b),
                  width: this.canvas.width, height: this.canvas.height});
    return fill.apply(this, arguments);
  };
  window.__texts = () => (current.length ? current : previous);
})();
