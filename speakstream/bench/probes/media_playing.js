// Run before the page's own scripts: notes when any audio or video element first starts
// playing (page clock, ms), attached to the page or not (Gradio's audio player keeps its own).
window.__mediaPlaying = null;
const notePlaying = () => { if (window.__mediaPlaying === null) window.__mediaPlaying = performance.now(); };
document.addEventListener('playing', notePlaying, true);
const createElement = document.createElement;
document.createElement = function (tag, ...rest) {
  const made = createElement.call(this, tag, ...rest);
  if (/^(audio|video)$/i.test(String(tag))) made.addEventListener('playing', notePlaying);
  return made;
};
const play = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function (...args) {
  this.addEventListener('playing', notePlaying);
  return play.apply(this, args);
};
