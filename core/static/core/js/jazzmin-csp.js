// The admin theme sets these in an inline script, which the site's
// Content-Security-Policy does not run; its change-list script reads them.
window.filterInputLengthDefault = window.filterInputLengthDefault || 0;
window.filterInputLength = window.filterInputLength || {};
