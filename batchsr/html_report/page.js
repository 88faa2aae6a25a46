// Progressive enhancement only: without it every number and picture is still there.
(function(){
var d=document.documentElement;d.setAttribute('data-js','on');
function key(c){var v=c.getAttribute('data-v');return v===null?c.textContent.trim():v}
function sortBy(t,i,th){
 var asc=th.getAttribute('aria-sort')!=='ascending',num=th.classList.contains('n'),hs=t.tHead.rows[0].cells;
 for(var k=0;k<hs.length;k++)hs[k].setAttribute('aria-sort','none');
 th.setAttribute('aria-sort',asc?'ascending':'descending');
 var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
 rows.sort(function(p,q){var x=key(p.cells[i]),y=key(q.cells[i]);
  if(num){x=x===''?NaN:+x;y=y===''?NaN:+y;if(isNaN(x))return isNaN(y)?0:1;if(isNaN(y))return -1;
   return asc?x-y:y-x}
  return asc?x.localeCompare(y):y.localeCompare(x)});
 rows.forEach(function(r){b.appendChild(r)})}
Array.prototype.forEach.call(document.querySelectorAll('table[data-sortable]'),function(t){
 Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){
  var bt=document.createElement('button');bt.type='button';bt.textContent=th.textContent;
  bt.title='sort by '+th.textContent;th.textContent='';th.appendChild(bt);th.setAttribute('aria-sort','none');
  bt.addEventListener('click',function(){sortBy(t,i,th)})})});
function check(){
 var im=document.images,ok=0,bad=0,eager=0,eagerOk=0;
 for(var k=0;k<im.length;k++){var good=im[k].complete&&im[k].naturalWidth>0;
  if(good)ok++;else if(im[k].complete)bad++;
  if(im[k].loading!=='lazy'){eager++;if(good)eagerOk++}}
 d.setAttribute('data-images',im.length);d.setAttribute('data-images-loaded',ok);
 d.setAttribute('data-images-broken',bad);d.setAttribute('data-images-eager',eager);
 d.setAttribute('data-images-eager-loaded',eagerOk);
 d.setAttribute('data-overflow-x',d.scrollWidth>d.clientWidth?'yes':'no');
 var w=document.getElementById('broken');
 if(w&&bad){w.hidden=false;w.querySelector('span').textContent=bad}}
window.addEventListener('load',check);
document.addEventListener('error',function(e){if(e.target.tagName==='IMG')check()},true);
})();
